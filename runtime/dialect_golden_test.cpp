// DialectGolden: each forked dialect builds, token for token and position for position, the
// context its upstream engine builds for the same generated text. The model is the 1M test model
// with the dialect's tags added as control tokens (as the checkpoints add them), so tags are
// single tokens here as they are there. Each expected context is written from the upstream code
// named in its test (read at the commits listed in dialects/forked_blocks.cpp); the run is the real
// runtime on llama.cpp with scripted threads (a script is read token by token, as if sampled).
#include "backends/llama/backend.h"
#include "dialects/apr.h"
#include "dialects/dialect.h"
#include "runtime/scheduler.h"
#include "tools/testmodel/test_model.h"

#include <gtest/gtest.h>

#include <map>

using namespace forkjoin;
using namespace forkjoin::runtime;

namespace {

std::shared_ptr<const llama::Model> testmodel_model() {
    return llama::Model::load(testmodel::ensure_test_model(FORKJOIN_TEST_MODEL_DIR, testmodel::test_model_spec("1M")));
}

std::shared_ptr<const llama::Model> model_with_tags(const dialects::Dialect & d) {
    testmodel::TestModelSpec spec = testmodel::test_model_spec("1M");
    spec.added_tokens = d.added_tokens();
    return llama::Model::load(testmodel::ensure_test_model(FORKJOIN_TEST_MODEL_DIR, spec));
}

struct Context {
    std::vector<Token> tokens;
    std::vector<int32_t> positions;
};

// A context as an upstream engine builds it: the model's start token (BOS where its tokenizer adds
// one: the engines' first encode() does), then encode() of each piece in turn, positions counted.
struct Builder {
    explicit Builder(const llama::Model & m) : model(m) {
        if (const auto start = m.start_token()) add_token(*start);
    }
    const llama::Model & model;
    Context c;
    Builder & add(const std::string & text) { return add_tokens(model.tokenize(text, false, /*parse_special=*/true)); }
    Builder & add_tokens(const std::vector<Token> & tokens) {
        for (Token t : tokens) add_token(t);
        return *this;
    }
    Builder & add_token(Token t) {
        const int32_t next = c.positions.empty() ? 0 : next_pos;
        c.tokens.push_back(t);
        c.positions.push_back(next);
        next_pos = next + 1;
        return *this;
    }
    Builder & at(int32_t pos) {  // the next token's position
        next_pos = pos;
        return *this;
    }
    int32_t next_pos = 0;
};

// A piece as the engines encode() it (no start token): the model's added tags are single tokens.
std::vector<Token> encode(const llama::Model & m, const std::string & text) { return m.tokenize(text, false, true); }
// A child's own tokens: its seed as the engine encodes it, then what it generated.
std::vector<Token> encode(const llama::Model & m, const std::string & seed, const std::string & generated) {
    std::vector<Token> out = encode(m, seed);
    const auto g = encode(m, generated);
    out.insert(out.end(), g.begin(), g.end());
    return out;
}

struct ScriptedRun {
    std::map<std::string, Context> child_start;  // each child's context when it first generates
    Context root_after_join;                     // the root's context when it goes on after the join
    RequestResult result;
};

// Runs prompt with scripted threads; captures the backend's contexts on the way.
ScriptedRun run_scripted(llama::LlamaBackend & backend, const dialects::Dialect & dialect, const std::string & prompt,
                 const std::function<std::optional<std::string>(const ThreadRecord &)> & script,
                 const std::string & after_join_marker) {
    ScriptedRun run;
    auto context_of = [&](const std::string & text) {
        for (SeqId s = 0; s < static_cast<SeqId>(backend.options().n_seq_max); ++s) {
            if (!backend.live(s)) continue;
            std::span<const Token> tokens = backend.tokens(s);
            if (!tokens.empty() && tokens.front() == backend.model().start_token()) tokens = tokens.subspan(1);  // BOS spells no text
            if (backend.model().detokenize(tokens) == text) return Context{backend.tokens(s), backend.positions(s)};
        }
        ADD_FAILURE() << "no sequence spells the thread's text: " << text;
        return Context{};
    };
    Limits limits;
    limits.max_depth = 2;
    Runtime rt(backend, dialect, limits);
    RequestOptions o;
    o.script = [&](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.depth > 0 && !run.child_start.contains(t.label)) run.child_start[t.label] = context_of(t.text);
        if (t.depth == 0 && run.root_after_join.tokens.empty() && t.text.find(after_join_marker) != std::string::npos) {
            run.root_after_join = context_of(t.text);
        }
        return script(t);
    };
    const RequestId id = rt.submit(prompt, o);
    rt.run();
    run.result = rt.result(id);
    EXPECT_TRUE(run.result.ok) << run.result.end_reason;
    EXPECT_EQ(backend.usage().live_sequences, 0u);
    return run;
}

llama::BackendOptions golden_backend() {
    llama::BackendOptions o;
    o.n_ctx = 4096;
    o.n_seq_max = 16;
    return o;
}

void expect_same(const Context & got, const Context & want, const llama::Model & m, const std::string & what) {
    EXPECT_EQ(got.tokens, want.tokens) << what << "\n got: " << m.detokenize(got.tokens) << "\nwant: " << m.detokenize(want.tokens);
    EXPECT_EQ(got.positions, want.positions) << what;
}

// The root after a shared-start join of two children (Multiverse's and NPR's merge): child 1's own
// tokens whole, child 2's without its first ("\n"; from start_path_idx), each from the fork point f,
// then `inserted` after the longer.
Context shared_start_root(const llama::Model & m, const std::string & before, const std::vector<Token> & own1,
                          const std::vector<Token> & own2, const std::string & inserted) {
    Builder root{m};
    root.add(before);
    const int32_t f = static_cast<int32_t>(root.c.tokens.size());
    root.add_tokens(own1);
    root.at(f + 1).add_tokens(std::vector<Token>(own2.begin() + 1, own2.end()));
    root.at(f + static_cast<int32_t>(std::max(own1.size(), own2.size()))).add(inserted);
    return root.c;
}

}  // namespace

// Multiverse engine (Multiverse-Engine b3ed243, sglang/srt/managers/schedule_batch.py):
//   filter_batch: child = origin_input_ids + output_ids[:-1] (the token after </Goal> dropped)
//     + tokenizer.encode(f"\n<Path>\n{e}"), e = "1:" from the outline; right_most_pos inherited (all
//     paths start at the same position); start_path_idx = len(prefix) + 1.
//   check_finished: a path finishes two tokens after </Path>; the merge keeps output_ids[:-1].
//   scheduler.py merge_zombie_batch_to_run: path 1 whole, later paths from start_path_idx (their
//     "\n" left out), then tokenizer.encode("<Conclusion>\n"); right_most_pos = max over paths.
TEST(DialectGolden, MultiverseContextsMatchItsEngine) {
    const auto mv = dialects::make_multiverse_dialect();
    const auto model = model_with_tags(*mv);
    ASSERT_EQ(model->tokenize("<Path>", false, true).size(), 1u);  // a tag is one token here
    llama::LlamaBackend backend(model, golden_backend());
    const std::string prompt = "Q: 2+3?\n";
    const std::string plan = "<Parallel>\n<Goal>\n<Outline>\n1: add\n</Outline>\n<Outline>\n2: check\n</Outline>\n</Goal>";
    const std::string path1 = " 5\n</Path>\n", path2 = " 2+3=5 ok\n</Path>\n";
    ASSERT_TRUE(model->start_token().has_value());  // the test vocabulary adds BOS, as Llama's does
    const ScriptedRun run = run_scripted(backend, *mv, prompt, [&](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.depth == 1) return t.label == "1" ? path1 : path2;
        if (t.text.find("</Goal>") == std::string::npos) return plan;
        if (t.text.find("</Conclusion>") == std::string::npos) return std::string("5\n</Conclusion>\n</Parallel>\n");
        return std::nullopt;
    }, "<Conclusion>");
    const auto & m = *model;
    const auto own1 = encode(m, "\n<Path>\n1:", path1);
    const auto own2 = encode(m, "\n<Path>\n2:", path2);
    expect_same(run.child_start.at("1"), Builder{m}.add(prompt).add(plan).add("\n<Path>\n1:").c, m, "path 1 starts");
    expect_same(run.child_start.at("2"), Builder{m}.add(prompt).add(plan).add("\n<Path>\n2:").c, m, "path 2 starts");
    expect_same(run.root_after_join, shared_start_root(m, prompt + plan, own1, own2, "<Conclusion>\n"), m, "the root after the join");
    EXPECT_EQ(backend.stats().position_shifts, 0);  // shared start: no cell moved
    EXPECT_EQ(run.result.metrics.total_tokens, backend.stats().tokens);  // every decoded token accounted
    EXPECT_EQ(run.result.text, prompt + plan + "\n<Path>\n1: 5\n</Path>\n<Path>\n2: 2+3=5 ok\n</Path>\n<Conclusion>\n5\n</Conclusion>\n</Parallel>\n");
}

// NPR engine (npr-rl/.../sglang/srt/managers/schedule_batch.py at e148ad5): the same mechanics as
// Multiverse with its tags: filter_batch seeds encode(f"\n<step>\n{e}"), check_finished ends a step
// two tokens after </step> (merge keeps output_ids[:-1]); scheduler.py merge_zombie_batch_to_run
// drops later steps' first token (start_path_idx = len(prefix) + 1) and appends
// encode("<takeaway>\n"); right_most_pos = max over steps.
TEST(DialectGolden, NprContextsMatchItsEngine) {
    const auto npr = dialects::make_npr_dialect();
    const auto model = model_with_tags(*npr);
    ASSERT_EQ(model->tokenize("</step>", false, true).size(), 1u);
    llama::LlamaBackend backend(model, golden_backend());
    const std::string prompt = "Q: 7*6?\n";
    const std::string plan = "<guideline>\n<plan>1: multiply</plan>\n<plan>2: add sixes</plan>\n</guideline>";
    const std::string step1 = " 7*6=42\n</step>\n", step2 = " 6+6+6+6+6+6+6=42\n</step>\n";
    const ScriptedRun run = run_scripted(backend, *npr, prompt, [&](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.depth == 1) return t.label == "1" ? step1 : step2;
        if (t.text.find("</guideline>") == std::string::npos) return plan;
        if (t.text.find("</takeaway>") == std::string::npos) return std::string("42\n</takeaway>\n");
        return std::nullopt;
    }, "<takeaway>");
    const auto & m = *model;
    const auto own1 = encode(m, "\n<step>\n1:", step1);
    const auto own2 = encode(m, "\n<step>\n2:", step2);
    expect_same(run.child_start.at("2"), Builder{m}.add(prompt).add(plan).add("\n<step>\n2:").c, m, "step 2 starts");
    expect_same(run.root_after_join, shared_start_root(m, prompt + plan, own1, own2, "<takeaway>\n"), m, "the root after the join");
    EXPECT_EQ(backend.stats().position_shifts, 0);
}

// ThreadWeaver (threadweaver_rl/verl/experimental/agent_loop/single_turn_agent_loop.py at 2662232,
// ParallelBranchingController): _parallel_step prompts each thread with current_tokens +
// encode("\n<Thread>\n{outline}:") and stops at </Thread> (kept); the join writes thread 1 whole and
// later threads as "<Thread>\n{n}:..." (no leading "\n"), then encode("\n") (no_conclusion, as its
// train_par.slurm runs), and sends the whole list back as a new prompt: plain positions, later
// threads re-read after earlier ones.
TEST(DialectGolden, ThreadweaverContextsMatchItsEngine) {
    const auto tw = dialects::make_threadweaver_dialect();
    const auto model = model_with_tags(*tw);
    ASSERT_EQ(model->tokenize("</Outlines>", false, true).size(), 1u);
    llama::LlamaBackend backend(model, golden_backend());
    const std::string prompt = "Q: 9-4?\n";
    const std::string plan = "<Parallel>\n<Outlines>\n<Outline>1: subtract</Outline>\n<Outline>2: count up</Outline>\n</Outlines>";
    const std::string thread1 = " 5\n</Thread>", thread2 = " 4,5,6,7,8,9: 5 steps\n</Thread>";
    const ScriptedRun run = run_scripted(backend, *tw, prompt, [&](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.depth == 1) return t.label == "1" ? thread1 : thread2;
        if (t.text.find("</Outlines>") == std::string::npos) return plan;
        if (t.text.find("</Parallel>") == std::string::npos) return std::string("</Parallel>\n5\n");
        return std::nullopt;
    }, "</Thread>\n");
    const auto & m = *model;
    expect_same(run.child_start.at("1"), Builder{m}.add(prompt).add(plan).add("\n<Thread>\n1:").c, m, "thread 1 starts");
    EXPECT_EQ(run.result.metrics.total_tokens, backend.stats().tokens);  // the re-read tokens count again
    Builder root{m};
    root.add(prompt).add(plan).add("\n<Thread>\n1:").add(thread1).add("<Thread>\n2:").add(thread2).add("\n");
    expect_same(run.root_after_join, root.c, m, "the root after the join");
    EXPECT_EQ(run.result.text, prompt + plan + "\n<Thread>\n1: 5\n</Thread><Thread>\n2: 4,5,6,7,8,9: 5 steps\n</Thread>\n</Parallel>\n5\n");
}

// Parallel-R1 (verl/verl/parallel_thinking_generation_v3/parallel_thinking_loop_v3.py at 7c3a8f3):
// the main call stops at <Parallel> (kept); _gen_single_path prompts prompt_ids + [<Path>] and stops
// at </Path> (kept); the engine appends the paths, then </Parallel>, encode("\n"), <Summary>, and the
// summary request re-sends the whole list: plain positions.
TEST(DialectGolden, ParallelR1ContextsMatchItsEngine) {
    const auto pr1 = dialects::make_parallel_r1_dialect();
    const auto model = model_with_tags(*pr1);
    ASSERT_EQ(model->tokenize("<Summary>", false, true).size(), 1u);
    llama::LlamaBackend backend(model, golden_backend());
    const std::string prompt = "Q: 3*3?\n";
    const std::string path1 = " 9</Path>", path2 = " 3+3+3=9</Path>";
    const ScriptedRun run = run_scripted(backend, *pr1, prompt, [&](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.depth == 1) return t.label == "1" ? path1 : path2;
        if (t.text.find("<Parallel>") == std::string::npos) return std::string("think<Parallel>");
        if (t.text.find("</Summary>") == std::string::npos) return std::string(" 9</Summary>\n9");
        return std::nullopt;
    }, "<Summary>");
    const auto & m = *model;
    expect_same(run.child_start.at("2"), Builder{m}.add(prompt).add("think<Parallel>").add("<Path>").c, m, "path 2 starts");
    Builder root{m};
    root.add(prompt).add("think<Parallel>").add("<Path>").add(path1).add("<Path>").add(path2).add("</Parallel>").add("\n").add("<Summary>");
    expect_same(run.root_after_join, root.c, m, "the root after the join");
}

// _gen_single_path closes a path that stopped at EOS (the EOS becomes </Path>) or at its length
// (</Path> appended): the summary request re-sends the closed path.
TEST(DialectGolden, ParallelR1ClosesAPathCutByEndOfText) {
    const auto pr1 = dialects::make_parallel_r1_dialect();
    const auto model = model_with_tags(*pr1);
    llama::LlamaBackend backend(model, golden_backend());
    const std::string prompt = "Q: 3*3?\n";
    const std::string path1 = " 9</Path>", cut = " 3+3+3=9";
    const ScriptedRun run = run_scripted(backend, *pr1, prompt, [&](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.depth == 1) {
            if (t.label == "1") return path1;
            return t.text.ends_with(cut) ? std::nullopt : std::optional<std::string>(cut);  // then end of text
        }
        if (t.text.find("<Parallel>") == std::string::npos) return std::string("think<Parallel>");
        if (t.text.find("</Summary>") == std::string::npos) return std::string(" 9</Summary>\n9");
        return std::nullopt;
    }, "<Summary>");
    const auto & m = *model;
    Builder root{m};
    root.add(prompt).add("think<Parallel>").add("<Path>").add(path1).add("<Path>").add(cut).add("</Path>").add("</Parallel>").add("\n").add("<Summary>");
    expect_same(run.root_after_join, root.c, m, "the root after the join");
    EXPECT_NE(run.result.text.find("<Path>" + cut + "</Path></Parallel>"), std::string::npos) << run.result.text;
}

// ---- The formats' limits, as the upstream engines apply them -----------------------------------

namespace {
RequestResult run_with_default_limits(const dialects::Dialect & d, const std::string & prompt,
                                      const std::function<std::optional<std::string>(const ThreadRecord &)> & script) {
    const auto model = model_with_tags(d);
    llama::LlamaBackend backend(model, golden_backend());
    Runtime rt(backend, d, Limits{});  // max_depth -1: the dialect's own
    RequestOptions o;
    o.script = script;
    const RequestId id = rt.submit(prompt, o);
    rt.run();
    EXPECT_EQ(backend.usage().live_sequences, 0u);
    return rt.result(id);
}
}  // namespace

// Multiverse and NPR fork while the block stack is at most 5 deep (filter_batch): a path at depth 6
// writes its block in line (no child, nothing inserted) and goes on.
TEST(DialectLimits, DepthSixDecodesInLineForMultiverseAndNpr) {
    struct Case {
        std::unique_ptr<dialects::Dialect> dialect;
        std::string plan, path_end, inserted;
    };
    Case cases[] = {
        {dialects::make_multiverse_dialect(), "<Parallel>\n<Goal>\n<Outline>\n1: deeper\n</Outline>\n</Goal>", " leaf\n</Path>\n", "<Conclusion>\n"},
        {dialects::make_npr_dialect(), "<guideline>\n<plan>1: deeper</plan>\n</guideline>", " leaf\n</step>\n", "<takeaway>\n"},
    };
    for (auto & c : cases) {
        EXPECT_EQ(c.dialect->default_max_depth(), 6);
        std::map<int, int> calls;
        const RequestResult r = run_with_default_limits(*c.dialect, "Q\n", [&](const ThreadRecord & t) -> std::optional<std::string> {
            const int n = calls[t.id]++;
            if (n == 0) return c.plan;  // every thread plans one child
            if (t.depth == 6 && n == 1) return "\n in line" + c.path_end;  // refused: it goes on in line
            if (t.depth == 0) return std::nullopt;
            return c.path_end;
        });
        ASSERT_TRUE(r.ok) << c.dialect->name() << ": " << r.end_reason;
        int deepest = 0;
        for (const auto & t : r.threads) deepest = std::max(deepest, t.depth);
        EXPECT_EQ(deepest, 6) << c.dialect->name();  // threads at depth 0..5 forked; depth 6 did not
        EXPECT_EQ(r.threads.size(), 7u) << c.dialect->name();
        const ThreadRecord & deepest_thread = r.threads.back();
        EXPECT_NE(deepest_thread.text.find("in line"), std::string::npos) << deepest_thread.text;
        // Its refused block was not joined: nothing was inserted after it.
        EXPECT_EQ(deepest_thread.text.find(c.inserted, deepest_thread.text.rfind("deeper")), std::string::npos) << deepest_thread.text;
    }
}

// NPR's check_finished finishes a request whose guideline has 0 or more than 5 plans, there.
TEST(DialectLimits, NprWithSixPlansEndsTheRequest) {
    const auto npr = dialects::make_npr_dialect();
    std::string plan = "<guideline>\n";
    for (int i = 1; i <= 6; ++i) plan += "<plan>" + std::to_string(i) + ": try</plan>\n";
    plan += "</guideline>";
    const RequestResult r = run_with_default_limits(*npr, "Q\n", [&](const ThreadRecord &) -> std::optional<std::string> {
        return plan + "\nnever written";
    });
    ASSERT_TRUE(r.ok) << r.end_reason;
    EXPECT_EQ(r.threads.size(), 1u);  // no step ran
    EXPECT_TRUE(r.text.ends_with("</guideline>")) << r.text;
}

// Parallel-R1 runs 2 paths a block and ends right after the 4th block's </Summary>
// (max_iterations_for_parallel_thinking = 4, num_paths = 2).
TEST(DialectLimits, ParallelR1RunsAtMostFourBlocksOfTwo) {
    const auto pr1 = dialects::make_parallel_r1_dialect();
    const RequestResult r = run_with_default_limits(*pr1, "Q\n", [&](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.depth == 1) return std::string(" p</Path>");
        if (t.text.ends_with("<Summary>")) return std::string(" s</Summary>\n");
        return std::string("again<Parallel>");  // it would open block after block
    });
    ASSERT_TRUE(r.ok) << r.end_reason;
    EXPECT_EQ(r.threads.size(), 1u + 4u * 2u);
    for (const auto & t : r.threads) EXPECT_LE(t.depth, 1);
    EXPECT_TRUE(r.text.ends_with("</Summary>")) << r.text;
}

// APR's engine (Parallel-Reasoning/APR 5577928, src/eval/eval_apr.py decode_trace and
// src/eval/parallel_infernce_utils.py): every call is bos_token + the text; a "<Sub Searches>" the
// model writes stops the call and the engine goes on from "<Calling Sub Searches>" in its place;
// _get_subsearch_info reads only "<Start Sub Search ...> Moving to Node #id" lines;
// get_main_trace_after_sub_search keeps the text before "<Calling Sub Searches>\n" and writes
// "<Sub Searches>\n", one "<Goal Reached in Sub Search i at level 1 at Node #id>\n" + path + "\n" or
// "<No Solution ...>\n" per child, then "<End Sub Searches>\n". The child's context is
// construct_sub_search_prefix's, plus the "\n" forkjoin's rendering ends it with (see dialects/apr.h).
TEST(DialectGolden, AprContextsMatchItsEngine) {
    const auto apr = dialects::make_apr_dialect();
    const auto model = testmodel_model();
    llama::LlamaBackend backend(model, golden_backend());
    const std::string prompt = "Moving to Node #0\nCurrent State: 12:[4, 6, 2], Operations: []\n";
    const std::string nodes = "Exploring Operation: 4+2=6, Resulting Numbers: [6, 6]\n"
                              "Generated Node #0,0: 12:[6, 6] Operation: 4+2=6\n";
    const std::string call = "\n<Start Sub Search 0 at level 1> Moving to Node #0,0\nnoise\n<End Calling Sub Searches>\n";
    const std::string child = "Exploring Operation: 6+6=12, Resulting Numbers: [12]\n12,12 equal: Goal Reached\n"
                              "Moving to Node #0,0\nCurrent State: 12:[6, 6], Operations: ['4+2=6']\n"
                              "Exploring Operation: 6+6=12, Resulting Numbers: [12]\n12,12 equal: Goal Reached\n";
    const ScriptedRun run = run_scripted(backend, *apr, prompt, [&](const ThreadRecord & t) -> std::optional<std::string> {
        if (t.depth == 1) return t.text.find("Goal Reached") == std::string::npos ? std::optional<std::string>(child) : std::nullopt;
        if (t.text.find("<End Sub Searches>") != std::string::npos) {
            return t.text.ends_with("done\n") ? std::nullopt : std::optional<std::string>("done\n");
        }
        if (t.text.find("<Calling Sub Searches>") == std::string::npos) return nodes + "<Sub Searches>\n<Goal Reached made up";
        return call;
    }, "<End Sub Searches>");
    const auto & m = *model;
    ASSERT_EQ(run.result.threads.size(), 2u);
    expect_same(run.child_start.at("0,0"),
                Builder{m}.add("Moving to Node #0,0\nCurrent State: 12:[6, 6], Operations: ['4+2=6']\n").c, m, "the sub search starts");
    const std::string joined = prompt + nodes + "<Sub Searches>\n<Goal Reached in Sub Search 0 at level 1 at Node #0,0>\n" +
                               "Moving to Node #0,0\nCurrent State: 12:[6, 6], Operations: ['4+2=6']\n"
                               "Exploring Operation: 6+6=12, Resulting Numbers: [12]\n12,12 equal: Goal Reached\n" +
                               "<End Sub Searches>\n";
    expect_same(run.root_after_join, Builder{m}.add(joined).c, m, "the root after the join");
    EXPECT_EQ(run.result.text, joined + "done\n");
    bool repaired = false;
    for (const auto & d : run.result.threads[0].decisions) repaired |= d.kind == "repair";
    EXPECT_TRUE(repaired);
}

// Multiverse's filter_batch also stops forking when right_most_pos - init_input_len >=
// max_new_tokens - 30 (NPR: - 1024): a thread with fewer tokens left writes its block in line.
TEST(DialectLimits, MultiverseNearItsLengthLimitDecodesInLine) {
    const auto mv = dialects::make_multiverse_dialect();
    EXPECT_EQ(mv->fork_headroom(), 30);
    EXPECT_EQ(dialects::make_npr_dialect()->fork_headroom(), 1024);
    const auto model = model_with_tags(*mv);
    const std::string plan = "<Parallel>\n<Goal>\n<Outline>\n1: a\n</Outline>\n</Goal>";
    const auto plan_tokens = static_cast<int>(model->tokenize(plan, false, true).size());
    auto run_with_budget = [&](int budget) {
        llama::LlamaBackend backend(model, golden_backend());
        Limits limits;
        limits.thread_token_budget = budget;
        Runtime rt(backend, *mv, limits);
        RequestOptions o;
        std::map<int, int> calls;
        o.script = [&](const ThreadRecord & t) -> std::optional<std::string> {
            const int n = calls[t.id]++;
            if (t.depth == 1) return std::string(" x\n</Path>\n");
            if (n == 0) return plan;
            return n == 1 ? std::optional<std::string>(" end") : std::nullopt;
        };
        const RequestId id = rt.submit("Q\n", o);
        rt.run();
        return rt.result(id);
    };
    const RequestResult roomy = run_with_budget(plan_tokens + 30 + 5);
    ASSERT_TRUE(roomy.ok) << roomy.end_reason;
    EXPECT_EQ(roomy.threads.size(), 2u);
    const RequestResult tight = run_with_budget(plan_tokens + 30 - 1);
    ASSERT_TRUE(tight.ok) << tight.end_reason;
    EXPECT_EQ(tight.threads.size(), 1u);  // no path forked
    EXPECT_TRUE(tight.text.ends_with("</Goal> end")) << tight.text;  // in line: nothing inserted
    bool said = false;
    for (const auto & d : tight.threads[0].decisions) said |= d.reason.find("forks with 30 to spare") != std::string::npos;
    EXPECT_TRUE(said);
}
