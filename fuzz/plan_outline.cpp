// Plan-execute reads a model's outline, its "(needs ...)" prefixes, workers' "NEEDS: k" markers and a
// validator's "REDO: ..." verdict: any text yields items, a graph (or its error and the sequential
// fallback), a marker or none, and a verdict naming only items that exist.
#include "strategies/plan_graph.h"

#include <cstdint>
#include <string>

using namespace forkjoin::strategies;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    const std::string text(reinterpret_cast<const char *>(data), size);
    const auto items = parse_outline(text, 16);
    const PlanGraph g = make_plan_graph(items);
    if (g.items.size() != items.size() || g.needs.size() != items.size()) __builtin_trap();
    for (size_t i = 0; i < g.needs.size(); ++i) {
        for (int k : g.needs[i]) {
            if (k < 0 || static_cast<size_t>(k) >= items.size()) __builtin_trap();  // only items that exist
        }
    }
    if (auto k = needs_marker(text)) (void)*k;
    const Verdict v = read_verdict(text, static_cast<int>(items.size()));
    for (int k : v.redo) {
        if (k < 0 || static_cast<size_t>(k) >= items.size()) __builtin_trap();
    }
    return 0;
}
