// The server's request parsing on any body: parse_request either returns a request or throws
// ApiError (a 400 naming the field); nothing else escapes, nothing crashes. Byte 0 picks chat or
// completions and the default task.
#include "base/error.h"
#include "server/openai_api.h"

#include <cstdint>
#include <string>

using namespace forkjoin;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    if (size < 1) return 0;
    server::ApiDefaults d;
    d.task = (data[0] & 2) ? "countdown" : "text";
    d.max_prompt_tokens = 256;
    d.render_chat = [](const std::vector<server::ChatMessage> & m) {
        std::string s;
        for (const auto & x : m) s += x.role + ": " + x.content + "\n";
        return s;
    };
    d.count_tokens = [](const std::string & text) {
        for (unsigned char c : text) {
            if (c == 0xff) throw Error(ErrorCode::unknown_character, "0xff");  // as a vocabulary would
        }
        return static_cast<int64_t>(text.size());
    };
    const std::string body(reinterpret_cast<const char *>(data + 1), size - 1);
    try {
        const auto req = server::parse_request(body, (data[0] & 1) != 0, d);
        (void)req;
    } catch (const server::ApiError & e) {
        if (e.status < 400 || e.status > 499) __builtin_trap();  // a client's mistake is a 4xx
    }
    return 0;
}
