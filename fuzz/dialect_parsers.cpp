// Every dialect's streaming parser on any bytes, fed in pieces the input chooses, then its join.
// The contract (dialects/dialect.h): a parser accepts any byte sequence and never throws; what it
// cannot follow is a `malformed` event; a `repair` names a byte inside the text. Input: byte 0 picks the dialect, byte 1 seeds the piece
// sizes, the rest is the thread's generated text.
#include "dialects/dialect.h"

#include <cstdint>
#include <string>
#include <vector>

using namespace forkjoin::dialects;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    if (size < 2) return 0;
    static const char * names[] = {"plain", "apr", "multiverse", "threadweaver", "npr", "parallel-r1"};
    const auto dialect = make_dialect(names[data[0] % 6]);
    uint32_t rng = data[1] * 2654435761u + 1;
    const std::string text(reinterpret_cast<const char *>(data + 2), size - 2);
    auto parser = dialect->parser("prompt\n");
    size_t at = 0;
    while (at < text.size()) {
        rng = rng * 1103515245u + 12345u;
        const size_t n = 1 + (rng >> 16) % 16;
        const auto piece = std::string_view(text).substr(at, n);
        at += piece.size();
        const auto event = parser->feed(piece);
        if (!event) continue;
        if (event->kind == EventKind::repair) {
            // The runtime goes on from the repaired text, as the upstream engine does.
            if (event->repair_from > parser->text().size()) __builtin_trap();
            parser = dialect->parser(parser->text().substr(0, event->repair_from) + event->repair_text);
            continue;
        }
        if (event->kind != EventKind::spawn) break;
        // Children answer with slices of the input; the join must take any of them.
        const SpawnRequest & spawn = event->spawn;
        std::vector<ChildResult> results;
        for (size_t i = 0; i < spawn.children.size(); ++i) {
            auto child = dialect->child_parser(spawn.children[i].prompt, spawn.children[i]);
            const std::string own = text.substr(std::min(text.size(), i * 7), 32);
            child->feed(own);
            results.push_back({child->text(), (i % 2) == 0});
        }
        const std::string joined = dialect->join(parser->text(), spawn, results);
        parser = dialect->parser(joined);
    }
    return 0;
}
