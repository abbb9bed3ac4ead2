// Resumable streams, as llama-server offers them: a generation requested with an
// X-Conversation-Id header is also written into a session buffer that outlives the client's
// connection. A client that reconnects (a reloaded web page, another tab) reads it again from any
// byte offset (GET /v1/stream?conv_id=ID&from=N), asks which of its conversations are live
// (POST /v1/streams/lookup) and stops one (DELETE /v1/stream?conv_id=ID).
//
// Unlike llama.cpp's own table (one per process, polled by its readers only), each HttpFront
// owns one StreamSessions: two servers in one process never see each other's conversations, a
// session belongs to the model instance that produced it (gone when that model is unloaded,
// swapped or restarted, as a llama-server child's sessions die with it), and close_all() wakes
// every reader and producer at once so that stop() stays bounded.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace llamaproc {

class ModelInstance;

// The bytes one generation streamed (SSE events, as sent), kept for readers that come later.
class StreamSession {
public:
    StreamSession(std::string conversation_id, std::weak_ptr<ModelInstance> owner, size_t max_bytes);

    const std::string & conversation_id() const { return conversation_id_; }
    int64_t started_at() const { return started_at_; }  // unix seconds

    // Producer side. append() keeps the last `max_bytes` (older bytes are dropped: a reader
    // that asks for them gets "offset lost"); finish() ends the session for its readers.
    void append(const std::string & bytes);
    void finish();
    // A stop asked for (DELETE, a newer request of the conversation, the server stopping):
    // the producer lets go and the session ends.
    void cancel();
    bool cancelled() const;

    bool done() const;
    size_t total_bytes() const;    // every byte that ever entered
    size_t dropped_bytes() const;  // bytes dropped from the front (over max_bytes)
    int64_t completed_at() const;  // unix seconds; 0 while the generation runs

    // True while the model instance that produced it still serves (not unloaded, swapped,
    // restarted or failed).
    bool owner_serving() const;

    enum class Read { bytes, finished, offset_lost, stopped };
    // Appends what the session holds from `offset` on to `out` and advances `offset`, waiting
    // for bytes while the generation runs. `bytes` when some came; else why not.
    Read read(size_t & offset, std::string & out, const std::function<bool()> & should_stop);

private:
    const std::string conversation_id_;
    const std::weak_ptr<ModelInstance> owner_;
    const size_t max_bytes_;
    const int64_t started_at_;

    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::string buffer_;
    size_t dropped_ = 0;
    bool done_ = false;
    bool cancelled_ = false;
    int64_t completed_at_ = 0;
};

// The sessions of one HTTP front, by conversation id. A conversation has at most one live
// session: a new request for it cancels the one before.
class StreamSessions {
public:
    static constexpr size_t max_session_bytes = 4u << 20;  // per session, as llama-server
    static constexpr int64_t keep_finished_s = 300;        // a finished session stays this long

    // A request for `conversation` is on its way to a model (it may wait for the model to load).
    // Returns its ticket: stop(conversation) or a newer request turns it stale.
    uint64_t expect(const std::string & conversation);
    bool wanted(const std::string & conversation, uint64_t ticket) const;
    // The request with `ticket` reached its model: its session, replacing (and cancelling) the
    // conversation's previous one. nullptr when the ticket went stale meanwhile.
    std::shared_ptr<StreamSession> open(const std::string & conversation, uint64_t ticket,
                                        std::weak_ptr<ModelInstance> owner);
    // The request with `ticket` ended without a stream (refused, not streaming, gone stale):
    // forgets its session, if it opened one.
    void close(const std::string & conversation, uint64_t ticket);

    // The conversation's session while its model serves it (a session whose model went away
    // is dropped here), else nullptr.
    std::shared_ptr<StreamSession> find(const std::string & conversation);
    // True while a request for the conversation waits for its model (no session yet).
    bool waiting_for_model(const std::string & conversation) const;
    // Live sessions of the conversations asked about: an id matches itself and "<id>::<model>".
    // Never lists a conversation it was not asked about.
    std::vector<std::shared_ptr<StreamSession>> lookup(const std::vector<std::string> & conversations);

    // The explicit stop (DELETE /v1/stream): cancels the conversation's generation or its
    // request still waiting for a model, and forgets it. Unknown ids are not an error.
    void stop(const std::string & conversation);
    // The server stops: every session ends and every reader and producer wakes.
    void close_all();

private:
    struct Conversation {
        uint64_t ticket = 0;
        bool waiting = false;  // a request with `ticket` has not reached its model yet
        std::shared_ptr<StreamSession> session;
    };
    // Drops finished sessions older than keep_finished_s and sessions whose model went away.
    void sweep_locked(std::vector<std::shared_ptr<StreamSession>> & ended);

    mutable std::mutex mutex_;
    uint64_t next_ticket_ = 1;
    std::map<std::string, Conversation> conversations_;
};

}  // namespace llamaproc
