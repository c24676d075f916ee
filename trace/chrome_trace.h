// A run's thread tree as Chrome trace JSON (chrome://tracing, Perfetto): one track per thread,
// one slice from its start to its end, with its tokens, state, final text and the limit decisions taken.
#pragma once

#include "runtime/scheduler.h"

#include <string>
#include <vector>

namespace forkjoin::trace {

// Each request becomes a process (pid = its index in `runs`), each thread a track (tid = its id).
std::string chrome_trace_json(const std::vector<const runtime::RequestResult *> & runs);

}  // namespace forkjoin::trace
