#include "backends/llama/llama_log.h"

#include <llama.h>

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>

namespace forkjoin::llama {
namespace {

constexpr size_t kKeptLines = 4;

std::mutex g_mutex;
std::deque<std::string> g_lines;  // guarded by g_mutex
std::string g_partial;            // llama.cpp may log one line in pieces (GGML_LOG_LEVEL_CONT)
bool g_partial_is_error = false;
bool g_echo_all = false;

void on_log(ggml_log_level level, const char * text, void * /*user*/) {
    if (g_echo_all) {
        std::fputs(text, stderr);
    }
    std::lock_guard<std::mutex> lock(g_mutex);
    if (level != GGML_LOG_LEVEL_CONT) {
        g_partial.clear();
        g_partial_is_error = level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN;
    }
    if (!g_partial_is_error) {
        return;
    }
    g_partial += text;
    size_t nl;
    while ((nl = g_partial.find('\n')) != std::string::npos) {
        g_lines.push_back(g_partial.substr(0, nl));
        g_partial.erase(0, nl + 1);
        if (g_lines.size() > kKeptLines) {
            g_lines.pop_front();
        }
    }
}

}  // namespace

void install_llama_log() {
    static std::once_flag once;
    std::call_once(once, [] {
        const char * env = std::getenv("FORKJOIN_LLAMA_LOG");
        g_echo_all = env != nullptr && env[0] == '1';
        llama_log_set(on_log, nullptr);
        llama_backend_init();
    });
}

std::string last_llama_error() {
    std::lock_guard<std::mutex> lock(g_mutex);
    std::string out;
    for (const auto & line : g_lines) {
        if (!out.empty()) out += "; ";
        out += line;
    }
    return out;
}

void clear_llama_error() {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_lines.clear();
    g_partial.clear();
}

}  // namespace forkjoin::llama
