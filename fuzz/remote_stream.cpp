// What a remote server sends back: SSE framing and completion chunks of any shape. The reader and
// the chunk parser either give results or throw forkjoin::Error with a message; nothing else.
#include "backends/remote/completions.h"
#include "backends/remote/sse.h"
#include "base/error.h"

#include <cstdint>
#include <string>

using namespace forkjoin;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    if (size < 1) return 0;
    remote::SseReader reader(4096);
    const std::string bytes(reinterpret_cast<const char *>(data + 1), size - 1);
    const size_t step = 1 + data[0] % 64;
    try {
        for (size_t at = 0; at < bytes.size(); at += step) {
            reader.feed(std::string_view(bytes).substr(at, step), [](std::string_view event) {
                try {
                    const auto c = remote::parse_completion_chunk(event);
                    if (c.ids_known && c.tokens.empty()) __builtin_trap();  // ids_known means ids
                } catch (const Error &) {
                }
                return true;
            });
        }
    } catch (const Error &) {  // an oversize event
    }
    return 0;
}
