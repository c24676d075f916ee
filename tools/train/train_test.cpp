// The trainer's contract with llama.cpp: the vocabulary tokenizes APR's format compactly through
// llama.cpp itself, and LibTorch's forward equals llama.cpp's forward on the exported GGUF.
#include "backends/llama/backend.h"
#include "base/error.h"
#include "tasks/countdown/search_trace.h"
#include "tasks/countdown/solver.h"
#include "tools/gguf/llama_gguf_reader.h"
#include "tools/train/countdown_vocabulary.h"
#include "tools/train/llama_torch.h"
#include "tools/train/trainer.h"
#include "tools/train/training_data.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

using namespace forkjoin;

namespace {

std::string temp_path(const std::string & name) {
    const auto dir = std::filesystem::temp_directory_path() / "forkjoin-train-test";
    std::filesystem::create_directories(dir);
    return (dir / name).string();
}

train::LlamaConfig small_config() {
    train::LlamaConfig c;
    c.n_vocab = static_cast<int64_t>(train::countdown_vocabulary().tokens.size());
    c.n_embd = 64;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_ff = 160;
    c.n_ctx = 256;
    return c;
}

std::string export_model(train::LlamaTorch & model, const std::string & name) {
    const std::string path = temp_path(name);
    gguf::write_llama_gguf(path, model->config().hparams(), train::countdown_vocabulary(), model->export_weights());
    return path;
}

// Largest |logit difference| between LibTorch and llama.cpp (F32 cache, no flash attention) over
// three prefixes of a Countdown prompt, and the largest |logit| seen.
std::pair<float, float> torch_vs_llama_cpp(train::LlamaTorch & model, const std::string & gguf_path) {
    const auto m = llama::Model::load(gguf_path);
    const auto tokens = m->tokenize(std::string(train::kSequentialTag) + "Moving to Node #0\nCurrent State: 24:[3, 7, 9], Operations: []\n");
    EXPECT_GT(tokens.size(), 10u);
    auto input = torch::tensor(std::vector<int64_t>(tokens.begin(), tokens.end())).unsqueeze(0);
    torch::Tensor torch_logits;
    {
        torch::NoGradGuard g;
        model->eval();
        torch_logits = model->forward(input)[0];
    }
    llama::BackendOptions o;
    o.n_ctx = 512;
    o.n_seq_max = 4;
    o.flash_attention = llama::FlashAttention::off;
    o.kv_f32 = true;  // an F16 cache alone differs by ~2e-3 relative here
    llama::LlamaBackend backend(m, o);
    float worst = 0, scale = 0;
    for (size_t n : {size_t{1}, tokens.size() / 2, tokens.size()}) {
        const auto seq = backend.open(std::vector<llama::Token>(tokens.begin(), tokens.begin() + static_cast<long>(n)), {}, false);
        const auto ours = backend.logits(seq);
        backend.close(seq);
        auto ref = torch_logits[static_cast<int64_t>(n) - 1];
        for (int64_t v = 0; v < ref.size(0); ++v) {
            worst = std::max(worst, std::fabs(ours[static_cast<size_t>(v)] - ref[v].item<float>()));
            scale = std::max(scale, std::fabs(ref[v].item<float>()));
        }
    }
    return {worst, scale};
}

}  // namespace

TEST(Train, VocabularyTokenizesAprFormatCompactlyThroughLlamaCpp) {
    torch::manual_seed(1);
    train::LlamaTorch model(small_config());
    model->init_weights();
    const auto m = llama::Model::load(export_model(model, "vocab.gguf"));
    countdown::SearchOptions o;
    o.parallel = true;
    const auto t = countdown::write_search_trace(countdown::Problem{{4, 6, 2}, 12}, o);
    for (const std::string & text : {t.main_calls[0], t.main_calls[1], t.sub_calls[0][1].main_calls[0]}) {
        const auto tokens = m->tokenize(text);
        EXPECT_EQ(m->detokenize(tokens), text);
        EXPECT_LT(tokens.size() * 4, text.size()) << "fewer than 4 bytes a token";
    }
    for (const char * phrase : {"Exploring Operation: ", "<End Calling Sub Searches>\n", " equal: Goal Reached\n",
                                train::kParallelTag, "742"}) {
        EXPECT_EQ(m->tokenize(phrase).size(), 1u) << phrase;
    }
    EXPECT_EQ(m->tokenize("</s>", false, true).at(0), train::kEosId);
    EXPECT_THROW(m->tokenize("caf\xC3\xA9"), Error);  // outside the vocabulary: a clear error
}

// LibTorch and llama.cpp agree on the logits of the exported model (guards RoPE pairing and the
// weight layout). Tolerance: 1e-4 of the largest logit (seen: 2e-6), flash attention off, F32 KV cache.
TEST(Train, TorchForwardEqualsLlamaCppOnTheExport) {
    torch::manual_seed(7);
    train::LlamaTorch model(small_config());
    model->init_weights();
    {
        // Larger weights than the init, so a wrong RoPE or layout cannot hide in tiny logits.
        torch::NoGradGuard g;
        for (auto & p : model->parameters()) {
            if (p.dim() == 2) p.mul_(20.0);
        }
    }
    const auto [worst, scale] = torch_vs_llama_cpp(model, export_model(model, "parity.gguf"));
    std::printf("torch vs llama.cpp: max |diff| %.3g on logits up to %.3g\n", worst, scale);
    EXPECT_GT(scale, 1.0f);
    EXPECT_LT(worst, 1e-4f * std::max(1.0f, scale));
}

// A checkpoint carries weights, not the RoPE tables: it loads into a model with a longer context and
// computes the same logits on what both can hold (a later stage trains longer traces).
TEST(Train, CheckpointResumesUnderALongerContext) {
    torch::manual_seed(11);
    train::LlamaConfig short_cfg = small_config();
    short_cfg.n_ctx = 64;
    train::LlamaTorch a(short_cfg);
    a->init_weights();
    const std::string path = temp_path("short-ctx.pt");
    torch::save(a, path);
    train::LlamaConfig long_cfg = short_cfg;
    long_cfg.n_ctx = 128;
    train::LlamaTorch b(long_cfg);
    torch::load(b, path);
    torch::NoGradGuard g;
    a->eval();
    b->eval();
    const auto tokens = torch::randint(0, short_cfg.n_vocab, {1, 100}, torch::kLong);
    EXPECT_TRUE(torch::allclose(a->forward(tokens.slice(1, 0, 64)), b->forward(tokens.slice(1, 0, 64))));
    EXPECT_EQ(b->forward(tokens).size(1), 100);
    EXPECT_THROW(a->forward(tokens), c10::Error);  // the short model still refuses what it cannot hold
}

// Only what the model writes is in the loss: the tag and prompt are not, and every example ends
// with </s> in the loss.
TEST(Train, ExamplesMaskPromptsAndJoinText) {
    torch::manual_seed(1);
    train::LlamaTorch model(small_config());
    const auto m = llama::Model::load(export_model(model, "examples.gguf"), true);
    countdown::SearchOptions o;
    o.beam_size = o.sub_beam_size = 2;
    o.seed = 3;
    const auto ex = train::make_examples(countdown::Problem{{4, 6, 2}, 12}, true, o, *m);
    ASSERT_EQ(ex.size(), 4u);  // spawn, join continuation, two children
    auto loss_text = [&](const train::Example & e) {
        std::vector<llama::Token> t;
        for (size_t i = 0; i < e.tokens.size(); ++i) {
            if (e.in_loss[i] && e.tokens[i] != train::kEosId) t.push_back(static_cast<llama::Token>(e.tokens[i]));
        }
        return m->detokenize(t);
    };
    for (const auto & e : ex) {
        EXPECT_EQ(e.tokens.back(), train::kEosId);
        EXPECT_TRUE(e.in_loss.back());
    }
    EXPECT_EQ(loss_text(ex[0]).rfind("Exploring Operation: 6-4=2", 0), 0u) << loss_text(ex[0]);
    EXPECT_TRUE(loss_text(ex[0]).ends_with("<End Calling Sub Searches>\n"));
    EXPECT_EQ(loss_text(ex[1]).rfind("12,12 equal: Goal Reached\nMoving to Node #0\n", 0), 0u) << loss_text(ex[1]);
    EXPECT_EQ(loss_text(ex[1]).find("<Sub Searches>"), std::string::npos);
    EXPECT_EQ(loss_text(ex[2]).rfind("Exploring Operation: ", 0), 0u) << loss_text(ex[2]);
    EXPECT_EQ(m->detokenize(std::vector<llama::Token>(ex[3].tokens.begin(), ex[3].tokens.begin() + 1)),
              train::kSequentialTag);  // children are sequential searches
}

// CI's smoke training: a few steps of a tiny model; the loss falls, the export loads in llama.cpp,
// a resumed run continues from the checkpoint, and the exported model matches the checkpoint.
TEST(Train, SmokeTrainingLossFallsExportLoadsAndResumes) {
    train::TrainOptions o;
    o.out_dir = temp_path("smoke-run");
    std::filesystem::remove_all(o.out_dir);
    o.seed = 5;
    o.steps = 30;
    o.batch_tokens = 1024;
    o.lr = 3e-3;
    o.warmup = 5;
    o.model = small_config();
    o.model.n_ctx = 512;
    o.checkpoint_every = 15;
    o.log_every = 10;
    o.eval_every = 0;
    o.threads = 0;  // FORKJOIN_THREADS (ctest: 1)
    o.curriculum = {{0, countdown::GeneratorOptions{3, 1, 10, 10, 30}, 0, {}}};
    std::vector<double> losses;
    o.on_step = [&](int64_t, double loss) { losses.push_back(loss); };
    o.steps = 15;
    train::train(o);
    o.steps = 30;  // the same command with more steps resumes at step 15
    const std::string path = train::train(o);
    ASSERT_EQ(losses.size(), 30u);
    const double first = (losses[0] + losses[1] + losses[2]) / 3, last = (losses[27] + losses[28] + losses[29]) / 3;
    std::printf("smoke training: loss %.3f -> %.3f\n", first, last);
    EXPECT_LT(last, first - 1.0);

    const auto m = llama::Model::load(path);
    EXPECT_EQ(m->n_vocab(), static_cast<int32_t>(train::countdown_vocabulary().tokens.size()));
    // The export is the checkpoint: parity between the saved LibTorch weights and llama.cpp.
    train::LlamaConfig cfg = o.model;
    train::LlamaTorch trained(cfg);
    torch::load(trained, (std::filesystem::path(o.out_dir) / "model.pt").string());
    const auto [worst, scale] = torch_vs_llama_cpp(trained, path);
    EXPECT_LT(worst, 1e-4f * std::max(1.0f, scale)) << worst << " on logits up to " << scale;
    const auto r = train::evaluate_sequential(path, {countdown::Problem{{4, 6, 2}, 12}}, 64);
    EXPECT_EQ(r.problems, 1);  // runs end to end through llama.cpp (a 30-step model solves nothing)
}

namespace {

// Options for the held-out checks: two short steps of the stream, no training.
train::TrainOptions stream_options() {
    train::TrainOptions o;
    o.seed = 5;
    o.steps = 2;
    o.batch_tokens = 512;
    o.model = small_config();
    return o;
}

}  // namespace

TEST(Train, HeldOutCheckFindsTheStreamsProblemsInAnyOrder) {
    train::TrainOptions o = stream_options();
    o.curriculum = {train::Stage{0, countdown::GeneratorOptions{}, 0, {}}};
    // Step 1's first problem, as batch_for draws it, with its numbers reversed: still the same problem.
    countdown::Problem used = countdown::ProblemGenerator(o.seed * 1000003ull + 1, o.curriculum[0].problems).next();
    std::reverse(used.nums.begin(), used.nums.end());
    const countdown::Problem unseen{{500, 600, 700}, 100};  // outside the stage's number range
    const auto seen = train::in_training_stream(o, {used, unseen});
    EXPECT_EQ(seen, (std::vector<bool>{true, false}));
    o.steps = 1;  // step 1 is no longer part of the stream
    EXPECT_FALSE(train::in_training_stream(o, {used})[0]);
    o.steps = 2;  // nor when the check starts after it
    EXPECT_FALSE(train::in_training_stream(o, {used}, 2)[0]);
    EXPECT_TRUE(train::in_training_stream(o, {used}, 1)[0]);
}

TEST(Train, HeldOutProblemsAreNeverDrawnAndTheNextTakesTheirPlace) {
    train::TrainOptions o = stream_options();
    o.curriculum = {train::Stage{0, countdown::GeneratorOptions{}, 0, {}}};
    const countdown::GeneratorOptions stage = o.curriculum[0].problems;
    countdown::ProblemGenerator gen(o.seed * 1000003ull + 1, stage);
    const countdown::Problem first = gen.next(), second = gen.next();
    ASSERT_EQ(train::in_training_stream(o, {first, second}), (std::vector<bool>{true, true}));
    countdown::Problem reversed = first;
    std::reverse(reversed.nums.begin(), reversed.nums.end());
    ASSERT_NE(reversed.nums, first.nums);  // else "in any order" below tests nothing
    o.held_out = {countdown::key_of(reversed)};  // held out in any order of its numbers
    EXPECT_FALSE(train::in_training_stream(o, {first})[0]);
    EXPECT_TRUE(train::in_training_stream(o, {second})[0]);
    // The step draws on past it: what it draws is the generator's stream with the held-out problem
    // left out, a run of the problems after it (a skip that ended the step, or re-seeded it, would not).
    o.steps = 2;  // step 1 alone
    countdown::ProblemGenerator all(o.seed * 1000003ull + 1, stage);
    std::vector<countdown::Problem> drawn;
    for (int i = 0; i < 64; ++i) drawn.push_back(all.next());
    o.held_out = {countdown::key_of(first)};
    const auto seen = train::in_training_stream(o, drawn, 1);
    EXPECT_FALSE(seen[0]);
    const size_t n = static_cast<size_t>(std::find(seen.begin() + 1, seen.end(), false) - seen.begin());
    ASSERT_GT(n, 2u);  // at least two problems after the held-out one
    ASSERT_LT(n, drawn.size());
    std::set<countdown::ProblemKey> run;
    for (size_t i = 0; i < n; ++i) run.insert(countdown::key_of(drawn[i]));
    for (size_t i = n; i < drawn.size(); ++i) {
        if (!run.contains(countdown::key_of(drawn[i]))) {
            EXPECT_FALSE(seen[i]) << i;  // a repeat may be seen
        }
    }
}

TEST(Train, MixedStageDrawsEverySizeAndLeavesSingleSizeStagesAsTheyWere) {
    train::TrainOptions o = stream_options();
    o.curriculum = train::parse_curriculum("0:3-4:1:99");
    ASSERT_EQ(o.curriculum.size(), 1u);
    EXPECT_EQ(o.curriculum[0].problems.count, 3);
    EXPECT_EQ(o.curriculum[0].max_count, 4);
    countdown::GeneratorOptions three = o.curriculum[0].problems, four = three;
    four.count = 4;
    // Step 1's first problem of each size: the first size from the step's own seed, as a stage of one
    // size draws it, the next from a seed of its own.
    const uint64_t seed = o.seed * 1000003ull + 1;
    const countdown::Problem first_three = countdown::ProblemGenerator(seed, three).next();
    const countdown::Problem first_four = countdown::ProblemGenerator(seed + 0x9E3779B97F4A7C15ull, four).next();
    EXPECT_EQ(train::in_training_stream(o, {first_three, first_four}), (std::vector<bool>{true, true}));
    o.curriculum = train::parse_curriculum("0:3:1:99");
    EXPECT_EQ(train::in_training_stream(o, {first_three, first_four}), (std::vector<bool>{true, false}));
    // A '+' part joins the turn with a seed of its own after the stage's sizes; the sizes before it
    // draw what they drew without it.
    o.curriculum = train::parse_curriculum("0:3-4:1:99+3:1:20");
    ASSERT_EQ(o.curriculum[0].more.size(), 1u);
    EXPECT_EQ(o.curriculum[0].more[0].count, 3);
    EXPECT_EQ(o.curriculum[0].more[0].max_number, 20);
    const countdown::Problem first_small = countdown::ProblemGenerator(seed + 2 * 0x9E3779B97F4A7C15ull, o.curriculum[0].more[0]).next();
    for (int n : first_small.nums) EXPECT_LE(n, 20);
    EXPECT_EQ(train::in_training_stream(o, {first_three, first_four, first_small}), (std::vector<bool>{true, true, true}));
    o.curriculum = train::parse_curriculum("0:3-4:1:99");
    EXPECT_FALSE(train::in_training_stream(o, {first_small})[0]);
}

TEST(Train, CurriculumParserNamesTheStageItRefuses) {
    const auto stages = train::parse_curriculum("0:3:1:20,3600:4:1:99,6100:3-4:1:99");
    ASSERT_EQ(stages.size(), 3u);
    EXPECT_EQ(stages[1].from_step, 3600);
    EXPECT_EQ(stages[1].problems.count, 4);
    EXPECT_EQ(stages[1].max_count, 0);
    EXPECT_EQ(stages[2].max_count, 4);
    for (const char * bad : {"0:3:1", "0:3:1:20x", "0:4-3:1:99", "0:3-:1:99", "0:0:1:99", "0:3:50:10",
                             "100:3:1:20,100:4:1:99", "0:three:1:99", "0:3:1:99+", "0:3:1:99+3:1", "0:3:1:99+3:30:20", "0:+3:1:20"}) {
        try {
            train::parse_curriculum(bad);
            ADD_FAILURE() << "accepted " << bad;
        } catch (const Error & e) {
            EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << bad;
            EXPECT_NE(std::string(e.what()).find("bad curriculum stage"), std::string::npos) << e.what();
        }
    }
}

TEST(Train, ScheduleRestartsWarmupAndDecayAtTheStageItResumesInto) {
    train::TrainOptions o;
    o.lr = 1e-3;
    o.min_lr = 1e-4;
    o.warmup = 10;
    o.steps = 200;
    EXPECT_DOUBLE_EQ(train::learning_rate(o, 0), 1e-4);  // warmup from the first step
    EXPECT_DOUBLE_EQ(train::learning_rate(o, 9), 1e-3);
    const double at_150 = train::learning_rate(o, 150);
    o.schedule_start = 100;  // a new stage resumed at step 100 warms up again and decays to min_lr by 200
    EXPECT_DOUBLE_EQ(train::learning_rate(o, 50), 1e-4);  // before the stage: the stage's first value
    EXPECT_DOUBLE_EQ(train::learning_rate(o, 100), 1e-4);
    EXPECT_DOUBLE_EQ(train::learning_rate(o, 109), 1e-3);
    EXPECT_GT(train::learning_rate(o, 150), at_150);     // the decay is stretched over the stage only
    EXPECT_GT(train::learning_rate(o, 120), train::learning_rate(o, 180));
    EXPECT_NEAR(train::learning_rate(o, 199), 1e-4, 1e-6);
}

// Expert iteration's data: the model's own verified examples keep their parts in and out of the loss,
// and fill their share of each batch beside the symbolic stream, the same for the same step.
TEST(Train, OwnExamplesFillTheirShareOfEachBatchWithTheirPartsInTheLoss) {
    torch::manual_seed(1);
    train::LlamaTorch model(small_config());
    const auto m = llama::Model::load(export_model(model, "own-examples.gguf"), true);
    strategies::TrainingTrace trace;
    trace.problem = countdown::Problem{{17, 4}, 21};
    trace.mode = "sequential";
    trace.thread = "root";
    const std::string prompt = std::string(train::kSequentialTag) + "Moving to Node #0\nCurrent State: 21:[17, 4], Operations: []\n";
    const std::string written = "Exploring Operation: 17+4=21, Resulting Numbers: [21]\n21,21 equal: Goal Reached\n";
    trace.parts = {{prompt, false}, {written, true}};
    const train::Example ex = train::example_from_trace(trace, *m);
    const size_t prompt_tokens = m->tokenize(prompt).size();
    ASSERT_GT(ex.tokens.size(), prompt_tokens + 1);
    std::vector<llama::Token> learned;
    for (size_t i = 0; i < ex.tokens.size(); ++i) {
        EXPECT_EQ(ex.in_loss[i] != 0, i >= prompt_tokens) << i;
        if (i >= prompt_tokens && i + 1 < ex.tokens.size()) learned.push_back(static_cast<llama::Token>(ex.tokens[i]));
    }
    EXPECT_EQ(m->detokenize(learned), written);
    EXPECT_EQ(ex.tokens.back(), train::kEosId);

    train::TrainOptions o = stream_options();
    o.curriculum = {train::Stage{0, countdown::GeneratorOptions{}, 0, {}}};
    o.traces_share = 0.5;
    auto own_tokens = [&](const std::vector<train::Example> & batch) {
        int64_t own = 0, all = 0;
        for (const auto & e : batch) {
            all += static_cast<int64_t>(e.tokens.size());
            if (e.tokens == ex.tokens) own += static_cast<int64_t>(e.tokens.size());
        }
        return std::pair{own, all};
    };
    const auto [own, all] = own_tokens(train::training_batch(o, 1, *m, {ex}));
    // About half: the own examples stop at the first one past half the batch, the symbolic ones at
    // the first past the whole (each example at most one whole example's length over).
    EXPECT_GE(own, o.batch_tokens / 2);
    EXPECT_LT(own, o.batch_tokens / 2 + static_cast<int64_t>(ex.tokens.size()) + 1);
    EXPECT_GE(all, o.batch_tokens);
    EXPECT_EQ(own_tokens(train::training_batch(o, 1, *m, {ex})), own_tokens(train::training_batch(o, 1, *m, {ex})));
    EXPECT_EQ(own_tokens(train::training_batch(o, 1, *m)).first, 0);  // without them: the symbolic stream only
    o.traces_share = 1.0;
    EXPECT_EQ(own_tokens(train::training_batch(o, 1, *m, {ex})).first, own_tokens(train::training_batch(o, 1, *m, {ex})).second);
}

// A traces file none of whose examples fits the training context is refused before any step, by name.
TEST(Train, ATracesFileWithNothingThatFitsIsRefused) {
    strategies::TrainingTrace trace;
    trace.problem = countdown::Problem{{17, 4}, 21};
    trace.mode = "sequential";
    trace.thread = "root";
    trace.parts = {{std::string(train::kSequentialTag), false}, {std::string(600, 'x'), true}};  // 600 tokens: one per character
    const std::string traces = temp_path("too-long.jsonl");
    {
        std::ofstream out(traces);
        out << strategies::to_json_line(trace) << "\n";
    }
    train::TrainOptions o;
    o.out_dir = temp_path("too-long-run");
    std::filesystem::remove_all(o.out_dir);
    o.steps = 1;
    o.model = small_config();  // n_ctx 256
    o.curriculum = {{0, countdown::GeneratorOptions{3, 1, 10, 10, 30}, 0, {}}};
    o.traces_path = traces;
    try {
        train::train(o);
        FAIL() << "trained on a file with nothing that fits";
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find("too-long.jsonl: no example fits the training context"), std::string::npos) << e.what();
    }
}

// Expert iteration starts from the shipped model: a GGUF read back gives the weights it was written
// from, bit for bit (F32), and train() started from it exports the same model (the file's shape wins
// over the options').
TEST(Train, AGgufReadBackGivesItsWeightsAndTrainingStartsFromThem) {
    torch::manual_seed(3);
    train::LlamaTorch original(small_config());
    const std::string path = export_model(original, "init-from.gguf");
    const gguf::LlamaFile file = gguf::read_llama_gguf(path);
    EXPECT_EQ(file.hparams.n_embd, 64);
    EXPECT_EQ(file.hparams.n_layer, 2);
    EXPECT_EQ(file.hparams.n_head, 4);
    EXPECT_EQ(file.hparams.n_ff, 160);
    train::LlamaTorch copy(small_config());
    copy->import_weights(file.weights);
    const auto tokens = torch::tensor(std::vector<int64_t>{1, 5, 9, 40, 77}).unsqueeze(0);
    {
        torch::NoGradGuard g;
        original->eval();
        copy->eval();
        EXPECT_TRUE(torch::equal(original->forward(tokens), copy->forward(tokens)));
    }

    train::TrainOptions o;
    o.out_dir = temp_path("init-run");
    std::filesystem::remove_all(o.out_dir);
    o.steps = 0;
    o.model = small_config();
    o.model.n_embd = 32;  // the file's 64 applies
    o.model.n_ctx = 512;
    o.curriculum = {{0, countdown::GeneratorOptions{3, 1, 10, 10, 30}, 0, {}}};
    o.init_from = path;
    const auto [worst, scale] = torch_vs_llama_cpp(original, train::train(o));
    EXPECT_LT(worst, 1e-4f * std::max(1.0f, scale)) << worst << " on logits up to " << scale;

    // A model of another vocabulary (one token more) is refused by name, before anything trains.
    gguf::Vocabulary vocab = train::countdown_vocabulary();
    vocab.tokens.push_back("<extra>");
    vocab.scores.push_back(0);
    vocab.types.push_back(gguf::TokenType::user_defined);
    train::LlamaConfig wider = small_config();
    wider.n_vocab = static_cast<int64_t>(vocab.tokens.size());
    train::LlamaTorch other(wider);
    o.init_from = temp_path("other-vocabulary.gguf");
    gguf::write_llama_gguf(o.init_from, wider.hparams(), vocab, other->export_weights());
    std::filesystem::remove_all(o.out_dir);
    try {
        train::train(o);
        ADD_FAILURE() << "started from a model of another vocabulary";
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find("other-vocabulary.gguf: a vocabulary of"), std::string::npos) << e.what();
    }
    EXPECT_THROW(gguf::read_llama_gguf(temp_path("no-such.gguf")), Error);
}
