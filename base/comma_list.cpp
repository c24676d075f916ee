#include "base/comma_list.h"

namespace forkjoin {

std::vector<std::string> split_comma_list(const std::string & list) {
    std::vector<std::string> items;
    size_t start = 0;
    while (true) {
        const size_t comma = list.find(',', start);
        if (comma == std::string::npos) {
            items.push_back(list.substr(start));
            return items;
        }
        items.push_back(list.substr(start, comma - start));
        start = comma + 1;
    }
}

}  // namespace forkjoin
