// The Chrome trace of a real run: one slice per thread with its accounting, parseable JSON.
#include "backends/llama/backend.h"
#include "dialects/apr.h"
#include "runtime/scheduler.h"
#include "tools/testmodel/test_model.h"
#include "trace/chrome_trace.h"
#include "trace/thread_tree.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using namespace forkjoin;

TEST(ChromeTrace, OneSlicePerThreadWithItsTokens) {
    auto model = llama::Model::load(testmodel::ensure_test_model(FORKJOIN_TEST_MODEL_DIR, testmodel::test_model_spec("1M")));
    llama::BackendOptions bo;
    bo.n_ctx = 4096;
    bo.n_seq_max = 8;
    llama::LlamaBackend backend(model, bo);
    const auto apr = dialects::make_apr_dialect();
    runtime::Runtime rt(backend, *apr);
    runtime::RequestOptions o;
    o.script = [](const runtime::ThreadRecord & t) -> std::optional<std::string> {
        if (t.depth == 1) return t.text.find("No solution") == std::string::npos ? std::optional<std::string>("No solution found.\n") : std::nullopt;
        if (t.text.find("<Sub Searches>") != std::string::npos) return std::nullopt;
        return std::string("Generated Node #0,0: 12:[6, 6] Operation: 4+2=6\n<Calling Sub Searches>\n"
                           "<Start Sub Search 0 at level 1> Moving to Node #0,0\n<End Calling Sub Searches>\n");
    };
    const auto id = rt.submit("Moving to Node #0\nCurrent State: 12:[4, 6, 2], Operations: []\n", o);
    rt.run();
    const auto & r = rt.result(id);
    ASSERT_EQ(r.threads.size(), 2u);
    const auto j = nlohmann::json::parse(trace::chrome_trace_json({&r}));
    int slices = 0;
    for (const auto & e : j["traceEvents"]) {
        if (e["ph"] != "X") continue;
        ++slices;
        const auto & t = r.threads.at(e["tid"].get<size_t>());
        EXPECT_EQ(e["args"]["generated_tokens"].get<int64_t>(), t.generated_tokens);
        EXPECT_EQ(e["args"]["parent"].get<int>(), t.parent);
        EXPECT_EQ(e["args"]["text"].get<std::string>(), t.text);
        EXPECT_GE(e["dur"].get<double>(), 0.0);
    }
    EXPECT_EQ(slices, 2);
}

// The tree carries a thread's confidence where it was measured, and nothing where it was not.
TEST(ThreadTree, CarriesConfidenceWhereMeasured) {
    runtime::ThreadRecord measured, plain;
    measured.confidence = {.window = 128, .tokens = 300, .mean = 4.5, .last_group = 4.2, .lowest_group = 3.9};
    plain.id = 1;
    const auto j = trace::thread_tree_json({measured, plain}, false);
    ASSERT_EQ(j.size(), 2u);
    EXPECT_EQ(j[0]["confidence"]["window"].get<int>(), 128);
    EXPECT_EQ(j[0]["confidence"]["tokens"].get<int64_t>(), 300);
    EXPECT_DOUBLE_EQ(j[0]["confidence"]["lowest_group"].get<double>(), 3.9);
    EXPECT_FALSE(j[1].contains("confidence"));
}
