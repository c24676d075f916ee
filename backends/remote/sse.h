// Server-sent events, the framing of a streamed OpenAI-compatible completion.
//
// Contract: SseReader takes the response body in whatever pieces the socket delivers and hands back
// the `data` of each complete event, in order (an event ends at a blank line; several `data:` lines of
// one event are joined with '\n'; comment lines (":...") and other fields are skipped; "\r\n" and "\n"
// both end lines). An event larger than max_event_bytes throws Error(invalid_argument): a server that
// never ends its event is broken, and buffering it without bound would be worse.
// Not thread-safe: one reader per stream.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace forkjoin::remote {

class SseReader {
public:
    explicit SseReader(size_t max_event_bytes = 1 << 20) : max_event_bytes_(max_event_bytes) {}

    // Calls on_data(data) for each event completed by `bytes`; stops early (returns false) when
    // on_data returns false.
    bool feed(std::string_view bytes, const std::function<bool(std::string_view data)> & on_data);
    // Bytes of an event begun but not ended (a stream cut here lost that event).
    size_t buffered() const { return line_.size() + data_.size(); }

private:
    bool end_line(const std::function<bool(std::string_view)> & on_data);

    size_t max_event_bytes_;
    std::string line_;  // the current line, without its end
    std::string data_;  // the current event's data lines so far
    bool has_data_ = false;
    bool after_cr_ = false;  // the last byte was '\r' (a following '\n' belongs to the same line end)
};

}  // namespace forkjoin::remote
