#include "runtime/controller.h"

#include <algorithm>

namespace forkjoin::runtime {

const char * limit_kind_name(LimitKind kind) {
    switch (kind) {
        case LimitKind::thread_tokens: return "token budget";
        case LimitKind::context_window: return "context window";
        case LimitKind::request_tokens: return "total token budget";
        case LimitKind::timeout: return "timeout";
    }
    return "?";
}

SpawnDecision DefaultController::on_spawn(const SpawnContext & c) {
    if (c.parent.depth >= c.limits.max_depth) {
        return {0, "spawn of " + std::to_string(c.requested) + " refused: depth limit " + std::to_string(c.limits.max_depth)};
    }
    const int n = std::min(c.requested, std::max(0, c.limits.max_children));
    if (n < c.requested) {
        return {n, "ran " + std::to_string(n) + " of " + std::to_string(c.requested) +
                       " children: max_children " + std::to_string(c.limits.max_children)};
    }
    return {n, "ran all " + std::to_string(n) + " children"};
}

AdmitDecision DefaultController::on_admit(const AdmitContext & c) {
    // Threads waiting on their children do not count against the limits: if they did, parents
    // holding every slot would wait forever for children that can never start.
    if (c.running_threads >= c.max_threads) return {AdmitAction::wait, "max_threads " + std::to_string(c.max_threads)};
    if (c.running_in_request >= c.limits.max_threads_per_request) {
        return {AdmitAction::wait, "max_threads_per_request " + std::to_string(c.limits.max_threads_per_request)};
    }
    // With nothing running, a thread is admitted anyway (progress first).
    if (c.nothing_running) return {AdmitAction::admit, "nothing else running"};
    // Room for its prompt and the growth it may still have, after the growth already promised to
    // the running threads.
    if (c.free_cells - c.promised_cells < c.prompt_estimate + c.headroom) {
        return {AdmitAction::wait, "KV cache: " + std::to_string(c.free_cells) + " cells free, " +
                                       std::to_string(c.promised_cells) + " promised to running threads, " +
                                       std::to_string(c.prompt_estimate + c.headroom) + " needed"};
    }
    // A new root needs sequences left for the children it may spawn.
    if (c.thread.parent < 0 && c.free_sequences <= static_cast<uint32_t>(std::max(0, c.limits.max_children))) {
        return {AdmitAction::wait, "sequences: " + std::to_string(c.free_sequences) + " free, a root keeps room for " +
                                       std::to_string(c.limits.max_children) + " children"};
    }
    return {AdmitAction::admit, "room in the cache and the thread limits"};
}

LimitDecision DefaultController::on_limit(const LimitContext & c) {
    switch (c.kind) {
        case LimitKind::thread_tokens:
            return {LimitAction::fail_thread, 0, "token budget (" + std::to_string(c.limits.thread_token_budget) + ")"};
        case LimitKind::context_window:
            return {LimitAction::fail_thread, 0, "context window (" + std::to_string(c.limits.max_context) + ")"};
        case LimitKind::request_tokens:
            return {LimitAction::cancel_request, 0, "total token budget (" + std::to_string(c.limits.total_token_budget) + ")"};
        case LimitKind::timeout:
            return {LimitAction::cancel_request, 0, "timeout"};
    }
    return {LimitAction::fail_thread, 0, "limit"};
}

}  // namespace forkjoin::runtime
