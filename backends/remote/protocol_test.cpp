// The remote backend's pure parts: SSE framing, completion chunks of the three servers, routing.
#include "backends/remote/completions.h"
#include "backends/remote/http_stream.h"
#include "backends/remote/router.h"
#include "backends/remote/sse.h"
#include "base/error.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>

namespace forkjoin::remote {
namespace {

std::vector<std::string> feed_all(SseReader & r, const std::vector<std::string> & pieces) {
    std::vector<std::string> out;
    for (const auto & p : pieces) r.feed(p, [&](std::string_view d) { out.emplace_back(d); return true; });
    return out;
}

TEST(Sse, EventsSplitAnywhereComeOutWhole) {
    const std::string stream = ": ping\n\ndata: {\"a\":1}\n\ndata: x\r\ndata: y\r\n\r\nevent: e\ndata: [DONE]\n\n";
    for (size_t cut = 0; cut <= stream.size(); ++cut) {
        SseReader r;
        const auto events = feed_all(r, {stream.substr(0, cut), stream.substr(cut)});
        ASSERT_EQ(events.size(), 3u) << "cut at " << cut;
        EXPECT_EQ(events[0], "{\"a\":1}");
        EXPECT_EQ(events[1], "x\ny");
        EXPECT_EQ(events[2], "[DONE]");
        EXPECT_EQ(r.buffered(), 0u);
    }
}

TEST(Sse, AnUnendedEventIsBufferedAndAnOversizeOneRefused) {
    SseReader r;
    EXPECT_TRUE(feed_all(r, {"data: {\"half\""}).empty());
    EXPECT_GT(r.buffered(), 0u);
    SseReader small(16);
    EXPECT_THROW(small.feed("data: 0123456789abcdefghij", [](std::string_view) { return true; }), Error);
}

TEST(Completions, RequestUsesTheCommonFieldsAndTokenIds) {
    CompletionRequest r{.model = "m", .prompt = {1, 2, 3}, .max_tokens = 7, .sampling = {}};
    const auto j = nlohmann::json::parse(completion_request_json(r));
    EXPECT_EQ(j["prompt"], nlohmann::json::array({1, 2, 3}));
    EXPECT_EQ(j["max_tokens"], 7);
    EXPECT_EQ(j["stream"], true);
    EXPECT_EQ(j["logprobs"], 1);
    EXPECT_FALSE(j.contains("stop"));
    EXPECT_EQ(j["top_k"], -1);  // off, said so: llama-server's own default is 40
    EXPECT_EQ(j["min_p"], 0.0);  // and 0.05
    r.sampling.top_k = 5;
    r.sampling.ignore_eos = true;
    const auto k = nlohmann::json::parse(completion_request_json(r));
    EXPECT_EQ(k["top_k"], 5);
    EXPECT_EQ(k["ignore_eos"], true);
}

TEST(Completions, LlamaServerChunkCarriesIdsInLogprobs) {
    // server_task_result_cmpl_partial::to_json_oaicompat with n_probs = 1
    const auto c = parse_completion_chunk(
        R"({"choices":[{"text":"ab","index":0,"logprobs":{"content":[{"id":5,"token":"a","bytes":[97],"logprob":-0.5,"top_logprobs":[]},{"id":9,"token":"b","bytes":[98],"logprob":-1.0,"top_logprobs":[]}]},"finish_reason":null}],"object":"text_completion"})");
    EXPECT_EQ(c.text, "ab");
    EXPECT_TRUE(c.ids_known);
    EXPECT_EQ(c.tokens, (std::vector<Token>{5, 9}));
    EXPECT_FLOAT_EQ(c.logprobs[1], -1.0f);
    EXPECT_FALSE(c.finish_reason);
    // The final chunk: empty text, finish_reason, usage with the cached prompt tokens.
    const auto f = parse_completion_chunk(
        R"({"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}],"usage":{"completion_tokens":2,"prompt_tokens":40,"total_tokens":42,"prompt_tokens_details":{"cached_tokens":32}},"timings":{"cache_n":32,"prompt_n":8}})");
    EXPECT_EQ(f.finish_reason, "stop");
    EXPECT_EQ(f.prompt_tokens, 40);
    EXPECT_EQ(f.cached_prompt_tokens, 32);
}

TEST(Completions, VllmAndSglangChunksCarryIdsTheirWays) {
    const auto legacy = parse_completion_chunk(
        R"({"choices":[{"text":"a","index":0,"logprobs":{"tokens":["token_id:5"],"token_logprobs":[-0.25],"top_logprobs":null,"text_offset":[0]},"finish_reason":null}]})");
    EXPECT_TRUE(legacy.ids_known);
    EXPECT_EQ(legacy.tokens, (std::vector<Token>{5}));
    EXPECT_FLOAT_EQ(legacy.logprobs[0], -0.25f);
    const auto ids = parse_completion_chunk(R"({"choices":[{"text":"a","index":0,"token_ids":[5],"finish_reason":null}]})");
    EXPECT_TRUE(ids.ids_known);
    EXPECT_EQ(ids.tokens, (std::vector<Token>{5}));
    const auto text_only = parse_completion_chunk(
        R"({"choices":[{"text":"a","index":0,"logprobs":{"tokens":["a"],"token_logprobs":[-0.25]},"finish_reason":null}]})");
    EXPECT_FALSE(text_only.ids_known);
    EXPECT_EQ(text_only.text, "a");
    const auto usage = parse_completion_chunk(R"({"choices":[],"usage":{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":8}}})");
    EXPECT_EQ(usage.cached_prompt_tokens, 8);
    EXPECT_TRUE(parse_completion_chunk("[DONE]").done);
}

TEST(Completions, GarbageIsAClearError) {
    for (const char * bad : {"not json", "[1,2]", R"({"id":"x"})", R"({"choices":{}})", R"({"choices":[{"text":3}]})",
                             R"({"choices":[{"text":"a","token_ids":["x"]}]})",
                             R"({"choices":[{"text":"a"}],"x":1e999})"}) {  // fuzz finding: out_of_range escaped
        try {
            parse_completion_chunk(bad);
            ADD_FAILURE() << "accepted: " << bad;
        } catch (const Error & e) {
            EXPECT_NE(std::string(e.what()).find("malformed completion chunk"), std::string::npos) << e.what();
        }
    }
    const auto err = parse_completion_chunk(R"({"error":{"message":"slot unavailable","code":503}})");
    EXPECT_EQ(err.error, "slot unavailable");
}

TEST(ServerUrl, SplitsHostAndPrefix) {
    EXPECT_EQ(split_server_url("http://127.0.0.1:8080"), (std::pair<std::string, std::string>{"http://127.0.0.1:8080", ""}));
    EXPECT_EQ(split_server_url("http://h:1/v1/"), (std::pair<std::string, std::string>{"http://h:1", ""}));
    EXPECT_EQ(split_server_url("http://h:1/proxy/v1"), (std::pair<std::string, std::string>{"http://h:1", "/proxy"}));
    EXPECT_EQ(split_server_url("https://h:1").first, "https://h:1");
    EXPECT_THROW(split_server_url("ftp://h:1"), Error);
    EXPECT_THROW(split_server_url("h:1"), Error);
}

std::vector<Token> iota_tokens(int n, int start = 0) {
    std::vector<Token> t(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = start + i;
    return t;
}

TEST(Router, PrefixHolderWinsUntilLoadOutweighsIt) {
    ReplicaRouter r({"http://a:1", "http://b:1"}, Routing::cache_aware, /*balance_slack=*/2);
    const auto parent = iota_tokens(64);
    const int first = r.pick(parent, -1);
    r.remember(first, parent);
    r.finished(first, false);
    auto child = parent;
    child.push_back(999);
    for (int i = 0; i < 2; ++i) EXPECT_EQ(r.pick(child, -1), first);  // the prefix's replica, twice
    // Two in flight there, none on the other: the slack (2) is used up, load wins.
    EXPECT_NE(r.pick(child, -1), first);
    // A prompt nobody holds goes to the least loaded replica.
    EXPECT_NE(r.pick(iota_tokens(64, 5000), -1), first);
}

TEST(Router, RoundRobinIgnoresPrefixesAndAFailedReplicaIsSkipped) {
    ReplicaRouter rr({"http://a:1", "http://b:1"}, Routing::round_robin);
    const auto p = iota_tokens(32);
    const int a = rr.pick(p, -1);
    rr.remember(a, p);
    rr.finished(a, false);
    EXPECT_NE(rr.pick(p, a), a);
    ReplicaRouter ca({"http://a:1", "http://b:1"}, Routing::cache_aware, 4, /*down_for_s=*/60);
    const int x = ca.pick(p, -1);
    ca.finished(x, /*failed=*/true, "refused");
    for (int i = 0; i < 3; ++i) EXPECT_NE(ca.pick(p, x), x);
    const auto st = ca.stats();
    EXPECT_FALSE(st[static_cast<size_t>(x)].up);
    EXPECT_EQ(st[static_cast<size_t>(x)].failures, 1);
    ReplicaRouter one({"http://a:1"}, Routing::cache_aware, 4, 60);
    one.finished(one.pick(p, -1), true, "refused");
    EXPECT_EQ(one.pick(p, 0), 0);  // nothing up: the one due back first is still tried (the caller backs off)
}

}  // namespace
}  // namespace forkjoin::remote
