#include "tools/train/llama_torch.h"

#include "base/error.h"

#include <cmath>

namespace forkjoin::train {

namespace F = torch::nn::functional;

gguf::LlamaHyperparams LlamaConfig::hparams() const {
    gguf::LlamaHyperparams hp;
    hp.n_vocab = static_cast<int32_t>(n_vocab);
    hp.n_embd = static_cast<int32_t>(n_embd);
    hp.n_layer = static_cast<int32_t>(n_layer);
    hp.n_head = static_cast<int32_t>(n_head);
    hp.n_head_kv = static_cast<int32_t>(n_head);
    hp.n_ff = static_cast<int32_t>(n_ff);
    hp.n_ctx_train = static_cast<int32_t>(n_ctx);
    hp.rms_eps = static_cast<float>(rms_eps);
    hp.rope_freq_base = static_cast<float>(rope_base);
    return hp;
}

RmsNormImpl::RmsNormImpl(int64_t dim, double eps_) : eps(eps_) {
    weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RmsNormImpl::forward(const torch::Tensor & x) {
    return x * torch::rsqrt(x.pow(2).mean(-1, true) + eps) * weight;
}

BlockImpl::BlockImpl(const LlamaConfig & c) : n_head(c.n_head), head_dim(c.n_embd / c.n_head) {
    auto linear = [&](const char * name, int64_t in, int64_t out) {
        return register_module(name, torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false)));
    };
    attn_norm = register_module("attn_norm", RmsNorm(c.n_embd, c.rms_eps));
    wq = linear("wq", c.n_embd, c.n_embd);
    wk = linear("wk", c.n_embd, c.n_embd);
    wv = linear("wv", c.n_embd, c.n_embd);
    wo = linear("wo", c.n_embd, c.n_embd);
    ffn_norm = register_module("ffn_norm", RmsNorm(c.n_embd, c.rms_eps));
    w_gate = linear("w_gate", c.n_embd, c.n_ff);
    w_up = linear("w_up", c.n_embd, c.n_ff);
    w_down = linear("w_down", c.n_ff, c.n_embd);
}

namespace {
// Rotates adjacent pairs: (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos). x: [B, H, T, hd].
torch::Tensor rope(const torch::Tensor & x, const torch::Tensor & cos, const torch::Tensor & sin) {
    const auto sizes = x.sizes();
    auto pairs = x.reshape({sizes[0], sizes[1], sizes[2], sizes[3] / 2, 2});
    auto x0 = pairs.select(-1, 0), x1 = pairs.select(-1, 1);
    auto r0 = x0 * cos - x1 * sin;
    auto r1 = x0 * sin + x1 * cos;
    return torch::stack({r0, r1}, -1).reshape(sizes);
}
}  // namespace

torch::Tensor BlockImpl::forward(const torch::Tensor & x, const torch::Tensor & cos, const torch::Tensor & sin,
                                 const torch::Tensor & mask) {
    const int64_t B = x.size(0), T = x.size(1), D = x.size(2);
    auto h = attn_norm(x);
    auto q = wq(h).view({B, T, n_head, head_dim}).transpose(1, 2);
    auto k = wk(h).view({B, T, n_head, head_dim}).transpose(1, 2);
    auto v = wv(h).view({B, T, n_head, head_dim}).transpose(1, 2);
    q = rope(q, cos, sin);
    k = rope(k, cos, sin);
    auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(head_dim));
    scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
    auto att = torch::matmul(torch::softmax(scores, -1), v).transpose(1, 2).reshape({B, T, D});
    auto y = x + wo(att);
    auto g = ffn_norm(y);
    return y + w_down(F::silu(w_gate(g)) * w_up(g));
}

LlamaTorchImpl::LlamaTorchImpl(const LlamaConfig & c) : config_(c) {
    tok_embd = register_module("tok_embd", torch::nn::Embedding(c.n_vocab, c.n_embd));
    layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.n_layer; ++i) layers->push_back(Block(c));
    output_norm = register_module("output_norm", RmsNorm(c.n_embd, c.rms_eps));
    output = register_module("output", torch::nn::Linear(torch::nn::LinearOptions(c.n_embd, c.n_vocab).bias(false)));
    const int64_t hd = c.n_embd / c.n_head;
    auto i = torch::arange(0, hd / 2, torch::kFloat64);
    auto inv_freq = torch::pow(c.rope_base, -2.0 * i / static_cast<double>(hd));
    auto pos = torch::arange(0, c.n_ctx, torch::kFloat64);
    auto angles = torch::outer(pos, inv_freq);
    // Not buffers: the tables are a function of the config, so they stay out of checkpoints and a
    // checkpoint resumes under a longer --ctx (a later stage with longer traces).
    rope_cos = torch::cos(angles).to(torch::kFloat32);
    rope_sin = torch::sin(angles).to(torch::kFloat32);
}

torch::Tensor LlamaTorchImpl::forward(const torch::Tensor & tokens) {
    const int64_t T = tokens.size(1);
    TORCH_CHECK(T <= config_.n_ctx, "sequence of ", T, " tokens exceeds n_ctx ", config_.n_ctx);
    auto x = tok_embd(tokens);
    auto cos = rope_cos.slice(0, 0, T).to(tokens.device()), sin = rope_sin.slice(0, 0, T).to(tokens.device());
    auto mask = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(tokens.device())).triu(1);
    for (const auto & layer : *layers) x = layer->as<Block>()->forward(x, cos, sin, mask);
    return output(output_norm(x));
}

void LlamaTorchImpl::init_weights() {
    torch::NoGradGuard no_grad;
    const double std = 0.02, resid = 0.02 / std::sqrt(2.0 * static_cast<double>(config_.n_layer));
    for (auto & p : named_parameters()) {
        const std::string & name = p.key();
        if (name.find("norm") != std::string::npos) {
            p.value().fill_(1.0);
        } else if (name.find("wo.") != std::string::npos || name.find("w_down.") != std::string::npos) {
            p.value().normal_(0.0, resid);
        } else {
            p.value().normal_(0.0, std);
        }
    }
}

namespace {
std::vector<float> to_vector(const torch::Tensor & t) {
    auto c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}
}  // namespace

std::vector<std::pair<torch::Tensor, std::vector<float> *>> LlamaTorchImpl::weight_slots(gguf::LlamaWeights & w) const {
    std::vector<std::pair<torch::Tensor, std::vector<float> *>> slots;
    slots.emplace_back(tok_embd->weight, &w.token_embd);
    w.layers.resize(layers->size());
    size_t il = 0;
    for (const auto & layer : *layers) {
        const auto * b = layer->as<Block>();
        gguf::LlamaLayerWeights & L = w.layers[il++];
        for (auto [param, values] : {std::pair{b->attn_norm->weight, &L.attn_norm}, {b->wq->weight, &L.wq}, {b->wk->weight, &L.wk},
                                     {b->wv->weight, &L.wv}, {b->wo->weight, &L.wo}, {b->ffn_norm->weight, &L.ffn_norm},
                                     {b->w_gate->weight, &L.w_gate}, {b->w_up->weight, &L.w_up}, {b->w_down->weight, &L.w_down}}) {
            slots.emplace_back(param, values);
        }
    }
    slots.emplace_back(output_norm->weight, &w.output_norm);
    slots.emplace_back(output->weight, &w.output);
    return slots;
}

gguf::LlamaWeights LlamaTorchImpl::export_weights() const {
    gguf::LlamaWeights w;
    for (auto & [param, values] : weight_slots(w)) *values = to_vector(param);
    return w;
}

void LlamaTorchImpl::import_weights(const gguf::LlamaWeights & weights) {
    gguf::LlamaWeights w = weights;
    if (w.output.empty()) w.output = w.token_embd;  // tied in the file: untied here, starting equal
    if (w.layers.size() != layers->size()) {
        throw Error(ErrorCode::invalid_argument, "weights for " + std::to_string(w.layers.size()) + " layers, the model has " +
                                                     std::to_string(layers->size()));
    }
    torch::NoGradGuard no_grad;
    for (auto & [param, values] : weight_slots(w)) {
        if (static_cast<int64_t>(values->size()) != param.numel()) {
            throw Error(ErrorCode::invalid_argument, "a weight of " + std::to_string(values->size()) + " values for a tensor of " +
                                                         std::to_string(param.numel()));
        }
        param.copy_(torch::from_blob(values->data(), param.sizes(), torch::kFloat32));
    }
}

}  // namespace forkjoin::train
