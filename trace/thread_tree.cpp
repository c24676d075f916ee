#include "trace/thread_tree.h"

namespace forkjoin::trace {

nlohmann::json decisions_json(const runtime::ThreadRecord & thread) {
    nlohmann::json decisions = nlohmann::json::array();
    for (const auto & d : thread.decisions) decisions.push_back({{"t_s", d.t_s}, {"kind", d.kind}, {"reason", d.reason}});
    return decisions;
}

nlohmann::json thread_tree_json(const std::vector<runtime::ThreadRecord> & threads, bool include_text) {
    using nlohmann::json;
    json tree = json::array();
    for (const auto & t : threads) {
        json node = {{"id", t.id},
                     {"parent", t.parent < 0 ? json(nullptr) : json(t.parent)},
                     {"label", t.label},
                     {"depth", t.depth},
                     {"state", runtime::thread_state_name(t.state)},
                     {"end_reason", t.end_reason},
                     {"prompt_tokens", t.prompt_tokens},
                     {"generated_tokens", t.generated_tokens},
                     {"inserted_tokens", t.inserted_tokens},
                     {"decoded_tokens", t.decoded_tokens},
                     {"max_context", t.max_context},
                     {"start_s", t.start_s},
                     {"end_s", t.end_s}};
        if (!t.decisions.empty()) node["decisions"] = decisions_json(t);
        if (t.preemptions > 0) node["preemptions"] = t.preemptions;
        if (!t.probes.empty()) {
            json probes = json::array();
            for (const auto & p : t.probes) probes.push_back({{"generated", p.generated}, {"nll", p.nll}});
            node["probes"] = probes;
            if (t.probe_reference) node["probe_reference"] = *t.probe_reference;
            node["probe_tokens"] = t.probe_tokens;
            node["probe_s"] = t.probe_s;
        }
        if (t.confidence.window > 0 && t.confidence.tokens > 0) {
            node["confidence"] = {{"window", t.confidence.window}, {"tokens", t.confidence.tokens}, {"mean", t.confidence.mean},
                                  {"lowest_group", t.confidence.lowest_group}, {"last_group", t.confidence.last_group}};
        }
        if (include_text) node["text"] = t.text;
        tree.push_back(std::move(node));
    }
    return tree;
}

}  // namespace forkjoin::trace
