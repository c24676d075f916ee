// Problems never to train on: the evaluation sets. Both writers of training data (forkjoin generate
// traces and forkjoin-train's symbolic stream) skip them, so a number measured on an eval set is
// never a number on problems the model was trained on.
//
// Pure apart from reading files; thread-safe.
#pragma once

#include "tasks/countdown/problem.h"

#include <set>
#include <string>
#include <vector>

namespace forkjoin::countdown {

// The files an --exclude argument names: every *eval*.jsonl in `models_dir` (the shipped eval sets),
// sorted, then the files of its comma-separated list; a list that starts with "none" drops the shipped
// sets ("none" alone: nothing held out). Throws forkjoin::Error(io) when the shipped sets are wanted
// and `models_dir` cannot be read or holds none: excluding nothing silently would train on them.
std::vector<std::string> held_out_files(const std::string & arg, const std::string & models_dir);

// Every problem of `files`, as keys. Throws forkjoin::Error(invalid_argument) as load_problems does.
std::set<ProblemKey> load_held_out(const std::vector<std::string> & files);

}  // namespace forkjoin::countdown
