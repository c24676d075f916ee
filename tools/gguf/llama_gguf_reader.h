// Reads back a Llama-architecture GGUF as write_llama_gguf writes it: the hyperparameters and every
// weight as F32 values in torch's layout (tools/gguf/llama_tensors.h), so a trainer can start from a
// shipped model instead of from random weights.
//
// Contract: F32 and F16 matrices are read (F16 widened exactly); any other type (a quantized file),
// another architecture, a missing key or tensor, or a tensor of the wrong size throws
// forkjoin::Error(model_load) naming the file and what is wrong. The vocabulary is not read.
#pragma once

#include "tools/gguf/llama_gguf_writer.h"

#include <string>

namespace forkjoin::gguf {

struct LlamaFile {
    LlamaHyperparams hparams;
    LlamaWeights weights;  // output empty when the file ties it to token_embd
};

LlamaFile read_llama_gguf(const std::string & path);

}  // namespace forkjoin::gguf
