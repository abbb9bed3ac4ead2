// DirectCall: one call of a server route from the host program, with no socket and no JSON
// over loopback. The same guarded llama.cpp handler that serves HTTP runs on a native worker
// thread with an in-process request; its tasks join the same queue and continuous batch as
// HTTP requests. The worker drains the response (streams chunk by chunk) into a private
// queue; the caller pulls with wait() and may cancel() at any time. Destroying the response
// cancels the task in llama.cpp: its slot is free after the decode step in progress.
#pragma once

#include "native_log.h"
#include "server/model_instance.h"
#include "server/route_call.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace llamaproc {

enum class CallEnd {
    running,
    complete,     // the response ended by itself (a stream sent its last chunk)
    cancelled,    // cancel() ended it
    interrupted,  // the server stopped or the model failed before the response was complete
};

struct CallBatch {
    std::vector<std::string> payloads;  // JSON texts: the whole body, or each stream event's data
    bool done = false;                  // nothing will follow
    int status = 0;                     // the response's HTTP status (0 until known)
    bool stream = false;
    CallEnd end = CallEnd::running;
};

class DirectCall : public std::enable_shared_from_this<DirectCall> {
public:
    // Starts POST `path` with `body` on a worker thread. `lease` is an acquired lease on the
    // instance; `member` its handler (nullptr: answer 404). `stopping` is the server's flag.
    // The call counts its outcome into `counter` (the server's requests) when it ends.
    static std::shared_ptr<DirectCall> start(std::unique_ptr<Lease> lease, route_member member, std::string path,
                                             std::string body, std::shared_ptr<LogTail> tail,
                                             std::shared_ptr<std::atomic<bool>> stopping,
                                             std::shared_ptr<FaultPlan> faults, std::shared_ptr<RequestCounter> counter);
    // A call that is already over: `status` with `body` (the server was not ready, ...),
    // counted into `counter` when given.
    static std::shared_ptr<DirectCall> finished(int status, std::string body,
                                                const std::shared_ptr<RequestCounter> & counter = nullptr);

    // The payloads queued since the last wait, waiting up to `timeout_s` for one (or the end).
    CallBatch wait(double timeout_s);
    // Ends the call as soon as possible; returns at once. Idempotent.
    void cancel();

private:
    DirectCall() = default;
    void run(std::unique_ptr<Lease> lease, route_member member, std::string path, std::string body);
    void push_sse(const std::string & chunk);
    void finish(CallEnd end);

    std::shared_ptr<LogTail> tail_;
    std::shared_ptr<std::atomic<bool>> stopping_;
    std::shared_ptr<FaultPlan> faults_;
    std::shared_ptr<RequestCounter> counter_;
    std::shared_ptr<std::atomic<bool>> cancelled_ = std::make_shared<std::atomic<bool>>(false);

    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::string> payloads_;
    bool done_ = false;
    int status_ = 0;
    bool stream_ = false;
    CallEnd end_ = CallEnd::running;
};

}  // namespace llamaproc
