#include "tasks/countdown/held_out.h"

#include "base/comma_list.h"

#include <algorithm>
#include <filesystem>

namespace forkjoin::countdown {

std::vector<std::string> held_out_files(const std::string & arg, const std::string & models_dir) {
    std::vector<std::string> files;
    if (arg == "none") return files;
    if (!arg.empty()) {
        for (const auto & f : split_comma_list(arg)) {
            if (!f.empty()) files.push_back(f);
        }
        return files;
    }
    std::error_code ec;
    for (const auto & entry : std::filesystem::directory_iterator(models_dir, ec)) {
        const std::string name = entry.path().filename().string();
        if (name.find("eval") != std::string::npos && name.ends_with(".jsonl")) files.push_back(entry.path().string());
    }
    std::sort(files.begin(), files.end());
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
