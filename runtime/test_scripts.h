// Scripted APR streams the runtime tests drive the real runtime with: a root's state, and a thread
// that expands its node and spawns a sub search on each of two children (again and again, where a
// test's script says so).
#pragma once

#include "runtime/request.h"

#include <string>

namespace forkjoin::runtime::test_support {

inline const std::string kAprRoot = "Moving to Node #0\nCurrent State: 12:[4, 6, 2], Operations: []\n";

// A thread that expands its node into two generated nodes and spawns a sub search on each.
inline std::string spawn_text(const std::string & node) {
    return "Exploring Operation: 4+2=6, Resulting Numbers: [6, 6]\n"
           "Generated Node #" + node + ",0: 12:[6, 6] Operation: 4+2=6\n"
           "Exploring Operation: 6-4=2, Resulting Numbers: [2, 2]\n"
           "Generated Node #" + node + ",1: 12:[2, 2] Operation: 6-4=2\n"
           "<Calling Sub Searches>\n"
           "<Start Sub Search 0 at level 1> Moving to Node #" + node + ",0\n"
           "<Start Sub Search 1 at level 1> Moving to Node #" + node + ",1\n"
           "<End Calling Sub Searches>\n";
}

// The node a thread's text moved to first ("0" for the root, "0,1" for its second child).
inline std::string node_of(const ThreadRecord & t) {
    const std::string key = "Moving to Node #";
    const size_t at = t.text.find(key);
    return t.text.substr(at + key.size(), t.text.find('\n', at) - at - key.size());
}

}  // namespace forkjoin::runtime::test_support
