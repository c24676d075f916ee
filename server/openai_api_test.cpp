// The request rules of the OpenAI surface, without a socket: what is accepted, what is refused and
// which field the 400 names.
#include "server/openai_api.h"

#include "base/error.h"

#include <gtest/gtest.h>

using namespace forkjoin;
using namespace forkjoin::server;

namespace {

ApiDefaults defaults(const std::string & task = "text") {
    ApiDefaults d;
    d.task = task;
    d.max_prompt_tokens = 100;
    d.count_tokens = [](const std::string & s) {
        if (s.find('\x01') != std::string::npos) throw Error(ErrorCode::unknown_character, "U+0001 is not in the vocabulary");
        return static_cast<int64_t>(s.size());  // one token per byte: easy to reason about here
    };
    d.render_chat = [](const std::vector<ChatMessage> & m) {
        std::string s;
        for (const auto & x : m) s += "<" + x.role + ">" + x.content;
        return s;
    };
    return d;
}

// The field a bad body is refused for (empty: accepted).
std::string refused(const std::string & body, bool chat = false, const std::string & task = "text") {
    try {
        parse_request(body, chat, defaults(task));
    } catch (const ApiError & e) {
        EXPECT_EQ(e.status, 400);
        return e.param.empty() ? "(body)" : e.param;
    }
    return "";
}

}  // namespace

TEST(OpenAiApi, StandardFieldsAreRead) {
    const ApiRequest r = parse_request(
        R"({"model":"m","prompt":"hello","max_tokens":7,"temperature":0.5,"top_p":0.9,"seed":42,"stop":["x","y"],
            "stream":true,"stream_options":{"include_usage":true},"user":"u1","logprobs":null,"presence_penalty":0})",
        false, defaults());
    EXPECT_EQ(r.prompt, "hello");
    EXPECT_EQ(r.limits.thread_token_budget, 7);
    EXPECT_FLOAT_EQ(r.temperature, 0.5f);
    EXPECT_FLOAT_EQ(r.top_p, 0.9f);
    EXPECT_EQ(r.seed, 42u);
    EXPECT_EQ(r.stop, (std::vector<std::string>{"x", "y"}));
    EXPECT_TRUE(r.stream);
    EXPECT_TRUE(r.include_usage);
    EXPECT_EQ(r.user, "u1");
    EXPECT_EQ(r.strategy, "native");  // the model decides
    EXPECT_FLOAT_EQ(parse_request(R"({"prompt":"a"})", false, defaults()).temperature, 1.0f);  // OpenAI's default
}

TEST(OpenAiApi, ChatRendersThroughTheTemplateAndCountdownTakesTheLastUserMessage) {
    const ApiRequest chat = parse_request(
        R"({"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}]})", true,
        defaults());
    EXPECT_EQ(chat.prompt, "<system>be brief<user>hi");
    const ApiRequest cd = parse_request(R"({"messages":[{"role":"user","content":"{\"nums\":[1,2],\"target\":3}"},
                                                       {"role":"assistant","content":"?"}]})",
                                        true, defaults("countdown"));
    ASSERT_TRUE(cd.problem.has_value());
    EXPECT_EQ(cd.problem->target, 3);
    EXPECT_FLOAT_EQ(cd.temperature, 0.0f);  // Countdown defaults to greedy
}

TEST(OpenAiApi, ExtensionObjectSetsStrategyAndLimits) {
    const ApiRequest r = parse_request(
        R"({"prompt":"q","temperature":0.7,"forkjoin":{"strategy":"self-consistency","samples":5,"max_children":3,"max_depth":2,
            "max_tokens_per_thread":50,"max_total_tokens":900,"max_context":80,"timeout":2.5,"include_text":true,"dialect":"multiverse"}})",
        false, defaults());
    EXPECT_EQ(r.strategy, "self-consistency");
    EXPECT_EQ(r.samples, 5);
    EXPECT_EQ(r.limits.max_children, 3);
    EXPECT_EQ(r.limits.max_depth, 2);
    EXPECT_EQ(r.limits.thread_token_budget, 50);
    EXPECT_EQ(r.limits.total_token_budget, 900);
    EXPECT_EQ(r.limits.max_context, 80);
    EXPECT_DOUBLE_EQ(r.timeout_s, 2.5);
    EXPECT_TRUE(r.include_text);
    EXPECT_EQ(r.dialect, "multiverse");
}

TEST(OpenAiApi, BadValuesNameTheirField) {
    EXPECT_EQ(refused("{bad"), "(body)");
    EXPECT_EQ(refused("[1,2]"), "(body)");
    EXPECT_EQ(refused(R"({})"), "prompt");
    EXPECT_EQ(refused(R"({"prompt":5})"), "prompt");
    EXPECT_EQ(refused(R"({"prompt":[1,2,3]})"), "prompt");  // token ids
    EXPECT_EQ(refused(R"({"prompt":""})"), "prompt");
    EXPECT_EQ(refused(R"({"prompt":"a","temperature":"hot"})"), "temperature");
    EXPECT_EQ(refused(R"({"prompt":"a","temperature":3})"), "temperature");
    EXPECT_EQ(refused(R"({"prompt":"a","top_p":0})"), "top_p");
    EXPECT_EQ(refused(R"({"prompt":"a","max_tokens":0})"), "max_tokens");
    EXPECT_EQ(refused(R"({"prompt":"a","max_tokens":1.5})"), "max_tokens");
    EXPECT_EQ(refused(R"({"prompt":"a","seed":"x"})"), "seed");
    EXPECT_EQ(refused(R"({"prompt":"a","stop":["a","b","c","d","e"]})"), "stop");
    EXPECT_EQ(refused(R"({"prompt":"a","stop":[""]})"), "stop");
    EXPECT_EQ(refused(R"({"prompt":"a","stream":"yes"})"), "stream");
    EXPECT_EQ(refused(R"({"prompt":"a","stream_options":{"include_usage":true}})"), "stream_options");
    EXPECT_EQ(refused(R"({"prompt":"a","n":2})"), "n");
    EXPECT_EQ(refused(R"({"prompt":"a","model":7})"), "model");
    EXPECT_EQ(refused(R"({"messages":[]})", true), "messages");
    EXPECT_EQ(refused(R"({"messages":[{"role":"user"}]})", true), "messages[0].content");
    EXPECT_EQ(refused(R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})", true), "messages[0].content[0]");
    EXPECT_EQ(refused(R"({"prompt":"a","forkjoin":{"strategy":"telepathy"}})"), "forkjoin.strategy");
    EXPECT_EQ(refused(R"({"prompt":"a","forkjoin":{"dialect":"klingon"}})"), "forkjoin.dialect");
    EXPECT_EQ(refused(R"({"prompt":"a","forkjoin":{"task":"poetry"}})"), "forkjoin.task");
    EXPECT_EQ(refused(R"({"prompt":"a","forkjoin":{"samples":0}})"), "forkjoin.samples");
    EXPECT_EQ(refused(R"({"prompt":"a","forkjoin":{"sampels":3}})"), "forkjoin.sampels");  // a typo is not ignored
    EXPECT_EQ(refused(R"({"prompt":"a","forkjoin":"native"})"), "forkjoin");
    EXPECT_EQ(refused(R"({"prompt":"a","forkjoin":{"strategy":"self-consistency"},"temperature":0})"), "temperature");
    EXPECT_EQ(refused(R"({"prompt":"a","forkjoin":{"strategy":"best-of-n"},"temperature":1})"), "forkjoin.strategy");  // no verifier for text
    EXPECT_EQ(refused(R"({"prompt":"{\"nums\":[1,2]}"})", false, "countdown"), "prompt");
    EXPECT_EQ(refused(R"({"prompt":"a","forkjoin":{"task":"countdown","strategy":"plan-execute"}})"), "forkjoin.strategy");
    // The prompt must fit one thread's context, and be text the model can encode.
    EXPECT_EQ(refused(R"({"prompt":")" + std::string(100, 'x') + R"("})"), "prompt");
    EXPECT_EQ(refused(R"({"prompt":"ab","forkjoin":{"max_context":2}})"), "prompt");
    EXPECT_EQ(refused(R"({"prompt":"a\u0001"})"), "prompt");
    EXPECT_EQ(refused(R"({"prompt":"fine","max_tokens":5})"), "");
}

TEST(OpenAiApi, ANumberPastADoublesRangeIsA400) {
    // Found by fuzz/openai_request: nlohmann throws out_of_range (not parse_error) for 1e999, which
    // escaped as a 500.
    EXPECT_EQ(refused(R"({"prompt": "x", "max_tokens": 8000.01e0002364095132451471360})"), "(body)");
}

TEST(OpenAiApi, StopStringsCutAtTheFirst) {
    std::string t = "one two three";
    EXPECT_TRUE(cut_at_stop(t, {"three", "two"}));
    EXPECT_EQ(t, "one ");
    std::string u = "nothing here";
    EXPECT_FALSE(cut_at_stop(u, {"x"}));
    EXPECT_EQ(u, "nothing here");
}
