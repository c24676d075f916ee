#include "trace/chrome_trace.h"
#include "trace/thread_tree.h"

#include <nlohmann/json.hpp>

namespace forkjoin::trace {

std::string chrome_trace_json(const std::vector<const runtime::RequestResult *> & runs) {
    nlohmann::json events = nlohmann::json::array();
    for (size_t pid = 0; pid < runs.size(); ++pid) {
        const auto & r = *runs[pid];
        events.push_back({{"ph", "M"}, {"name", "process_name"}, {"pid", pid},
                          {"args", {{"name", "request " + std::to_string(pid) + (r.ok ? "" : " (" + r.end_reason + ")")}}}});
        for (const auto & t : r.threads) {
            const std::string name = t.parent < 0 ? "root" : "thread " + std::to_string(t.id) + " " + t.label;
            events.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", pid}, {"tid", t.id}, {"args", {{"name", name}}}});
            nlohmann::json args = {{"state", runtime::thread_state_name(t.state)},
                                   {"parent", t.parent},
                                   {"depth", t.depth},
                                   {"prompt_tokens", t.prompt_tokens},
                                   {"generated_tokens", t.generated_tokens},
                                   {"inserted_tokens", t.inserted_tokens},
                                   {"decoded_tokens", t.decoded_tokens},
                                   {"max_context", t.max_context}};
            if (!t.end_reason.empty()) args["end_reason"] = t.end_reason;
            if (!t.decisions.empty()) args["decisions"] = decisions_json(t);
            args["text"] = t.text;  // what the thread read and wrote: why it failed is usually in here
            const double start_us = t.start_s * 1e6, end_us = std::max(t.end_s, t.start_s) * 1e6;
            events.push_back({{"ph", "X"}, {"name", name}, {"pid", pid}, {"tid", t.id}, {"ts", start_us},
                              {"dur", end_us - start_us}, {"args", args}});
        }
        events.push_back({{"ph", "i"}, {"name", "metrics"}, {"pid", pid}, {"tid", 0}, {"s", "p"},
                          {"ts", r.metrics.wall_s * 1e6},
                          {"args", {{"total_tokens", r.metrics.total_tokens},
                                    {"sequential_tokens", r.metrics.sequential_tokens},
                                    {"max_context_tokens", r.metrics.max_context_tokens},
                                    {"decode_steps", r.metrics.decode_steps},
                                    {"mean_batch", r.metrics.mean_batch}}}});
    }
    // A model can stop mid UTF-8 sequence: replace broken bytes instead of throwing.
    return nlohmann::json{{"traceEvents", events}, {"displayTimeUnit", "ms"}}.dump(1, ' ', false,
                                                                                  nlohmann::json::error_handler_t::replace);
}

}  // namespace forkjoin::trace
