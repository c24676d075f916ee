// Deterministic, randomly initialised Llama-architecture models for tests and benchmarks.
//
// The same (size, seed) always yields the same bytes on any machine: weights come from a
// splitmix64 generator and Box-Muller, not from <random>'s implementation-defined distributions.
// The vocabulary is small and character-level (printable ASCII, space, newline, a few merges,
// <unk>/<s>/</s>), so any ASCII text tokenizes and anything else is an unknown character.
#pragma once

#include "tools/gguf/llama_gguf_writer.h"

#include <cstdint>
#include <string>
#include <vector>

namespace forkjoin::testmodel {

struct TestModelSpec {
    std::string name;  // "1M", "10M", "50M" or "custom"
    gguf::LlamaHyperparams hparams;
    uint64_t seed = 1;
    gguf::WeightType matrix_type = gguf::WeightType::f32;
    float logit_scale = 4.0f;  // std of the output logits: larger = more peaked, fewer greedy near-ties
    std::string chat_template;  // written as tokenizer.chat_template when set (tests of chat rendering)
    // Control tokens appended to the vocabulary, as a checkpoint's added special tokens are (a
    // dialect's tags: tests then see single tokens where the real checkpoints do).
    std::vector<std::string> added_tokens;
};

// Named sizes: "1M" (d 128, 5 layers), "10M" (d 320, 8 layers), "50M" (d 640, 10 layers).
// Throws forkjoin::Error(invalid_argument) for an unknown name.
TestModelSpec test_model_spec(const std::string & size, uint64_t seed = 1);

gguf::Vocabulary test_vocabulary(const std::vector<std::string> & added_tokens = {});

void write_test_model(const std::string & path, const TestModelSpec & spec);

// Writes the model into dir unless a file for the same spec is already there; returns its path.
std::string ensure_test_model(const std::string & dir, const TestModelSpec & spec);

uint64_t parameter_count(const gguf::LlamaHyperparams & hp);

}  // namespace forkjoin::testmodel
