// What `forkjoin run` shows while a job runs, from the engine's events (runtime/engine.h).
//   terminal: the thread tree redrawn in place as it grows, a line per thread (state, tokens, label);
//   piped:    one plain line per thread event (started, spawned, joined, ended), as they happen;
//   quiet:    nothing (--json prints the whole result at the end instead).
// on_event() is the job's sink: it runs on the engine's loop thread and only formats and writes.
#pragma once

#include "runtime/engine.h"

#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>

namespace forkjoin::app {

class LiveView {
public:
    enum class Mode { terminal, lines, quiet };
    explicit LiveView(Mode mode, std::FILE * out = stdout) : mode_(mode), out_(out) {}
    // Terminal when `out` is one, else lines; quiet when `json`.
    static Mode mode_for(std::FILE * out, bool json);

    void on_event(const runtime::JobEvent & e);

private:
    struct Row {
        int parent = -1;
        int depth = 0;
        std::string label;
        std::string state = "queued";
        int64_t tokens = 0;
    };
    void redraw(bool force);
    void line(const std::string & text);

    Mode mode_;
    std::FILE * out_;
    std::mutex mu_;
    std::map<int, Row> rows_;
    int drawn_ = 0;  // lines of the last drawing (terminal)
    std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace forkjoin::app
