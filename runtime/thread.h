// One reasoning thread, as the runtime tracks it and as the trace records it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace forkjoin::runtime {

enum class ThreadState { queued, running, waiting, done, failed, cancelled };
const char * thread_state_name(ThreadState s);
bool thread_ended(ThreadState s);  // done, failed or cancelled

// One probe of the context-rot monitor: how well the thread still recalls its probe text.
struct Probe {
    int64_t generated = 0;  // the thread's generated tokens when probed
    double nll = 0;         // mean negative log-likelihood per probe token (nats)
};

// A thread's confidence the way DeepConf measures it (Fu et al. 2025, "Deep Think with Confidence"):
// per sampled token, the mean negative log-probability of the model's k most likely tokens there
// (high: the model was sure; a flat distribution gives a low value); a "group" is the mean over a
// sliding window of the last `window` tokens. Measured only when the request's controller asks for it
// (Controller::confidence_plan).
struct Confidence {
    int window = 0;             // tokens per group; 0: not measured
    int64_t tokens = 0;         // tokens measured
    double mean = 0;            // over all of them
    double last_group = 0;      // the latest full window's
    double lowest_group = 0;    // the lowest full window's; a thread that ended before one window filled
                                // has its mean here
};

// A controller decision taken for a thread (runtime/controller.h), as the trace records it.
struct Decision {
    double t_s = 0;      // since the request started
    std::string kind;    // "spawn", "admit", "limit", "stop" (siblings cancelled early), "validate" (re-exploration), "confidence" (stopped: low confidence),
                         // "probe", "compact"
    std::string reason;
};

struct ThreadRecord {
    int id = 0;
    int parent = -1;            // -1: the request's root
    int depth = 0;
    std::string label;          // what the parent called it (APR: the node id)
    ThreadState state = ThreadState::queued;
    std::string end_reason;     // why it failed or was cancelled
    std::vector<std::vector<int>> spawns;  // children, per spawn
    int64_t prompt_tokens = 0;     // its starting context
    int64_t generated_tokens = 0;  // sampled by the model
    int64_t inserted_tokens = 0;   // decoded for it but not generated: join text the dialect wrote
    int64_t decoded_tokens = 0;    // what the backend decoded for it (re-decoded tokens count again)
    int64_t max_context = 0;       // longest its context grew
    double start_s = 0, end_s = 0; // since the request started
    std::string text;              // its final context
    bool nested = false;           // runs a sub-problem as a search of its own (SpawnDecision::nested):
                                   // `text` is in the sub-problem's terms
    std::string request_text;      // under or at a nested search: `text` read back into the request's own
                                   // terms (what the root's task would read); empty: `text` already is
    const std::string & in_request_terms() const { return request_text.empty() ? text : request_text; }
    Confidence confidence;
    std::vector<Probe> probes;         // the context-rot monitor's probes, the first one the baseline
    std::optional<double> probe_reference;  // the probe's NLL after the clean reference context, when
                                            // the monitor's plan has one (scored once, at the first probe)
    int compactions = 0;               // times the monitor replaced its context (decisions say what went)
    int summaries = 0;                 // summarizers started for it (ProbeDecision::summarize), whatever came of them
    bool forked = false;               // shares its parent's context up to the spawn (a forked child)
    int preemptions = 0;               // times a full KV cache took its cells (it resumed by recomputing them)
    int64_t probe_tokens = 0;          // what probing cost: tokens evaluated on throwaway forks, and
    double probe_s = 0;                // the wall time it took
    std::vector<Decision> decisions;  // the controller's decisions for it: spawns run, trimmed or refused,
                                      // admissions after a wait, limits
};

}  // namespace forkjoin::runtime
