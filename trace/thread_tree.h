// A job's thread tree as JSON: one object per thread (id, parent, label, depth, state, end reason,
// tokens, times, the controller's decisions; the text when asked). The server's `forkjoin` object
// and `forkjoin run --json` print the same shape.
#pragma once

#include "runtime/thread.h"

#include <nlohmann/json.hpp>

#include <vector>

namespace forkjoin::trace {

// The controller's decisions for one thread: [{t_s, kind, reason}, ...].
nlohmann::json decisions_json(const runtime::ThreadRecord & thread);

nlohmann::json thread_tree_json(const std::vector<runtime::ThreadRecord> & threads, bool include_text);

}  // namespace forkjoin::trace
