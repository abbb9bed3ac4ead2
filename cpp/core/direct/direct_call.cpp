#include "direct/direct_call.h"

#include "server-common.h"

#include <chrono>
#include <thread>

namespace llamaproc {

std::shared_ptr<DirectCall> DirectCall::start(std::unique_ptr<Lease> lease, route_member member, std::string path,
                                              std::string body, std::shared_ptr<LogTail> tail,
                                              std::shared_ptr<std::atomic<bool>> stopping,
                                              std::shared_ptr<FaultPlan> faults,
                                              std::shared_ptr<RequestCounter> counter) {
    std::shared_ptr<DirectCall> call(new DirectCall());
    call->tail_ = std::move(tail);
    call->stopping_ = std::move(stopping);
    call->faults_ = std::move(faults);
    call->counter_ = std::move(counter);
    if (member == nullptr) {
        auto res = error_response("no route " + path + " on this server", ERROR_TYPE_NOT_FOUND);
        return finished(res->status, res->data, call->counter_);
    }
    if (answers_without_the_loop(path)) {
        // tokenize, detokenize, apply-template: answered from the vocabulary and templates on
        // the calling thread, never queued for the loop: no worker needed
        call->run(std::move(lease), member, std::move(path), std::move(body));
        return call;
    }
    // the worker owns the call (and the lease) until it is done; the caller may drop it earlier
    std::thread([call, lease = std::move(lease), member, path = std::move(path), body = std::move(body)]() mutable {
        call->run(std::move(lease), member, std::move(path), std::move(body));
    }).detach();
    return call;
}

std::shared_ptr<DirectCall> DirectCall::finished(int status, std::string body,
                                                 const std::shared_ptr<RequestCounter> & counter) {
    if (counter) {
        counter->count(outcome_of(status));
    }
    std::shared_ptr<DirectCall> call(new DirectCall());
    call->status_ = status;
    call->payloads_.push_back(std::move(body));
    call->done_ = true;
    call->end_ = CallEnd::complete;
    return call;
}

void DirectCall::cancel() {
    cancelled_->store(true);
    cv_.notify_all();
}

CallBatch DirectCall::wait(double timeout_s) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (payloads_.empty() && !done_ && timeout_s > 0) {
        cv_.wait_for(lock, std::chrono::duration<double>(timeout_s),
                     [this] { return !payloads_.empty() || done_ || cancelled_->load(); });
    }
    CallBatch batch;
    batch.payloads.assign(std::make_move_iterator(payloads_.begin()), std::make_move_iterator(payloads_.end()));
    payloads_.clear();
    batch.done = done_;
    batch.status = status_;
    batch.stream = stream_;
    batch.end = end_;
    return batch;
}

// One chunk holds one or more SSE events ("data: {...}\n\n", "event: x\ndata: {...}\n\n");
// pings (":") and the closing "[DONE]" carry nothing for the caller.
void DirectCall::push_sse(const std::string & chunk) {
    std::vector<std::string> found;
    size_t pos = 0;
    while (pos < chunk.size()) {
        size_t eol = chunk.find('\n', pos);
        if (eol == std::string::npos) {
            eol = chunk.size();
        }
        if (chunk.compare(pos, 5, "data:") == 0) {
            size_t begin = pos + 5;
            while (begin < eol && chunk[begin] == ' ') {
                ++begin;
            }
            std::string payload = chunk.substr(begin, eol - begin);
            if (payload != "[DONE]" && !payload.empty()) {
                found.push_back(std::move(payload));
            }
        }
        pos = eol + 1;
    }
    if (found.empty()) {
        return;
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto & p : found) {
            payloads_.push_back(std::move(p));
        }
    }
    cv_.notify_all();
}

void DirectCall::finish(CallEnd end) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (counter_) {  // as the HTTP front counts (the status, and a stream that broke off), before
                     // the caller can see the call done
        counter_->count(outcome_of(status_));
        if (stream_ && end == CallEnd::interrupted) {
            counter_->count(RequestOutcome::stream_failed);
        }
    }
    done_ = true;
    end_ = end;
    cv_.notify_all();
}

void DirectCall::run(std::unique_ptr<Lease> lease, route_member member, std::string path, std::string body) {
    ThreadLogScope scope(tail_);  // a failed GGML_ASSERT in the handler throws instead of aborting
    ModelInstance & inst = *lease->inst;
    {
        GuardedRequest request(path, std::move(body), cancelled_, stopping_, inst.down_flag());
        faults_->park_while_busy(request.req.should_stop);
        server_http_res_ptr res = call_route(inst, member, request.req);
        bool failed = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            status_ = res->status;
            stream_ = res->is_stream();
            if (!stream_) {
                payloads_.push_back(std::move(res->data));
            }
        }
        cv_.notify_all();
        if (res->is_stream()) {
            StreamFaults stream_faults(*faults_);
            std::string chunk;
            for (;;) {
                if (!stream_faults.before_chunk(request.req.should_stop)) {
                    failed = true;  // a test cut this stream: it ends unfinished
                    break;
                }
                chunk.clear();
                const bool more = next_chunk(*res, inst, chunk, failed);
                push_sse(chunk);
                if (!more || cancelled_->load()) {
                    break;
                }
            }
        }
        const CallEnd end = cancelled_->load() ? CallEnd::cancelled
                            : failed || (res->is_stream() && request.req.should_stop()) ? CallEnd::interrupted
                                                                                       : CallEnd::complete;
        try {
            res->on_complete();
        } catch (const NativeAbort & e) {
            inst.fail_from_request(e.what());
        } catch (const std::exception & e) {
            log_line(LogLevel::error, std::string("direct call completion failed: ") + e.what());
        }
        res.reset();  // an unfinished task is cancelled here; the slot frees after this decode step
        lease.reset();
        finish(end);
    }
}

}  // namespace llamaproc
