#include "tools/train/countdown_vocabulary.h"

#include <string>

namespace forkjoin::train {

gguf::Vocabulary countdown_vocabulary() {
    gguf::Vocabulary v;
    v.tokenizer = "rwkv";
    auto add = [&](const std::string & text, gguf::TokenType type = gguf::TokenType::normal) {
        v.tokens.push_back(text);
        v.scores.push_back(0.0f);
        v.types.push_back(type);
    };
    add("<unk>", gguf::TokenType::unknown);
    add("<s>", gguf::TokenType::control);
    add("</s>", gguf::TokenType::control);
    add(kSequentialTag);
    add(kParallelTag);
    add("\n");
    for (char c = 32; c < 127; ++c) add(std::string(1, c));
    for (int n = 10; n < 1000; ++n) add(std::to_string(n));
    const char * phrases[] = {
        "Moving to Node #", "Current State: ", ", Operations: [", "], Operations: [", "Exploring Operation: ",
        ", Resulting Numbers: [", "Generated Node #", " Operation: ", " unequal: No Solution\n",
        " equal: Goal Reached\n", "No solution found.\n", "<Calling Sub Searches>\n", "<Start Sub Search ",
        " at level 1> Moving to Node #", "<End Calling Sub Searches>\n", "<Sub Searches>\n",
        "<No Solution in Sub Search ", "<Goal Reached in Sub Search ", " at level 1 at Node #", ">\n",
        "<End Sub Searches>\n", "]\n", "', '", "['", "']\n", ", ",
    };
    for (const char * p : phrases) add(p);
    v.unk_id = 0;
    v.bos_id = 1;
    v.eos_id = kEosId;
    v.add_bos = false;
    v.add_space_prefix = false;
    return v;
}

}  // namespace forkjoin::train
