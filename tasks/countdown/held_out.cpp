#include "tasks/countdown/held_out.h"

#include "base/comma_list.h"
#include "base/error.h"

#include <algorithm>
#include <filesystem>

namespace forkjoin::countdown {

std::vector<std::string> held_out_files(const std::string & arg, const std::string & models_dir) {
    std::vector<std::string> named;
    for (const auto & f : split_comma_list(arg)) {
        if (!f.empty()) named.push_back(f);
    }
    std::vector<std::string> files;
    const bool defaults = named.empty() || named.front() != "none";
    if (!defaults) named.erase(named.begin());
    if (defaults) {
        std::error_code ec;
        for (const auto & entry : std::filesystem::directory_iterator(models_dir, ec)) {
            const std::string name = entry.path().filename().string();
            if (name.find("eval") != std::string::npos && name.ends_with(".jsonl")) files.push_back(entry.path().string());
        }
        // Silently excluding nothing would train on the eval sets: a binary moved away from its
        // source tree must say so rather than go on.
        if (ec || files.empty()) {
            throw Error(ErrorCode::io, "no eval sets to hold out: " + models_dir +
                                           (ec ? " cannot be read (" + ec.message() + ")" : " holds no *eval*.jsonl") +
                                           "; name them with --exclude FILE[,FILE], or --exclude none to hold out nothing");
        }
        std::sort(files.begin(), files.end());
    }
    files.insert(files.end(), named.begin(), named.end());
    return files;
}

std::set<ProblemKey> load_held_out(const std::vector<std::string> & files) {
    std::set<ProblemKey> keys;
    for (const auto & f : files) {
        for (const auto & p : load_problems(f)) keys.insert(key_of(p));
    }
    return keys;
}

}  // namespace forkjoin::countdown
