// Plan-execute reads a model's outline, its "(needs ...)" prefixes and workers' "NEEDS: k" markers:
// any text yields items, a graph (or its error and the sequential fallback) and a marker or none.
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
    return 0;
}
