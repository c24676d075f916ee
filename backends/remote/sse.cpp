#include "backends/remote/sse.h"

#include "base/error.h"

namespace forkjoin::remote {

bool SseReader::end_line(const std::function<bool(std::string_view)> & on_data) {
    if (line_.empty()) {  // a blank line ends the event
        if (!has_data_) return true;
        const std::string data = std::move(data_);
        data_.clear();
        has_data_ = false;
        return on_data(data);
    }
    if (line_.rfind("data:", 0) == 0) {
        std::string_view value = std::string_view(line_).substr(5);
        if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        if (has_data_) data_ += '\n';
        data_ += value;
        has_data_ = true;
    }
    // ":" comments (keep-alives), "event:", "id:", "retry:": nothing a completion needs.
    line_.clear();
    return true;
}

bool SseReader::feed(std::string_view bytes, const std::function<bool(std::string_view data)> & on_data) {
    for (char c : bytes) {
        if (c == '\n' && after_cr_) {  // the '\n' of a "\r\n"
            after_cr_ = false;
            continue;
        }
        after_cr_ = c == '\r';
        if (c == '\r' || c == '\n') {
            if (!end_line(on_data)) return false;
            continue;
        }
        line_ += c;
        if (line_.size() + data_.size() > max_event_bytes_) {
            throw Error(ErrorCode::invalid_argument,
                        "server-sent event larger than " + std::to_string(max_event_bytes_) + " bytes without an end");
        }
    }
    return true;
}

}  // namespace forkjoin::remote
