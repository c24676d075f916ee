// The `apr` dialect: exactly the markup of APR (Pan et al. 2025) and its Countdown search traces.
//
// Spawn: the parent writes
//   <Calling Sub Searches>
//   <Start Sub Search 0 at level 1> Moving to Node #0,0
//   <Start Sub Search 1 at level 1> Moving to Node #0,1
//   <End Calling Sub Searches>
// and stops. Each child is a fresh thread whose context is
//   "Moving to Node #<id>\nCurrent State: <target>:[<nums>], Operations: [<ops>]\n"
// rebuilt, as APR's inference does, from the parent's own "Generated Node #<id>: ..." line and the
// operations of the node it was generated from.
// Join: the spawn block is replaced by
//   <Sub Searches>
//   <Goal Reached in Sub Search <i> at level <L> at Node #<id>>   + the child's clean path
//   <No Solution in Sub Search <i> at level <L> at Node #<id>>
//   <End Sub Searches>
// A child reached its goal when its text says "Goal Reached" twice (the search's goal line, then
// the clean path it ends with), as in APR's get_search_result.
// As APR's engine (src/eval/): stray lines in a spawn block are skipped, an empty block joins empty,
// and a "<Sub Searches>" the model writes itself is repaired into "<Calling Sub Searches>".
// Child contexts end with the state line's "\n" in forkjoin's rendering, which the shipped Countdown
// model was trained on; APR's engine (construct_sub_search_prefix) ends them before it and the model
// writes it: AprOptions::state_line_newline = false, as the apr prompt style sets.
// Where forkjoin differs on purpose: a child at the depth limit that spawns is joined at once and goes
// on (APR's never nests, so such a child ends with no result there).
#pragma once

#include "dialects/dialect.h"

namespace forkjoin::dialects {

struct AprOptions {
    // Prepended to every child's context. APR's checkpoints use none; forkjoin's Countdown model
    // puts its sequential-mode tag here.
    std::string child_prefix;
    // A child's context ends after its state line's "\n" (forkjoin's Countdown model) or before it
    // (APR's checkpoints: the model writes it).
    bool state_line_newline = true;
};

std::unique_ptr<Dialect> make_apr_dialect(const AprOptions & options = {});

}  // namespace forkjoin::dialects
