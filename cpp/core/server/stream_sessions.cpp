#include "server/stream_sessions.h"

#include "server/model_instance.h"

#include <chrono>

namespace llamaproc {

namespace {

int64_t unix_seconds() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// How long a waiting reader sleeps before it checks its should_stop again (a client gone).
constexpr auto reader_wake = std::chrono::milliseconds(50);

void end_all(const std::vector<std::shared_ptr<StreamSession>> & sessions) {
    for (const auto & s : sessions) {
        s->cancel();
    }
}

}  // namespace

StreamSession::StreamSession(std::string conversation_id, std::weak_ptr<ModelInstance> owner, size_t max_bytes)
    : conversation_id_(std::move(conversation_id)),
      owner_(std::move(owner)),
      max_bytes_(max_bytes),
      started_at_(unix_seconds()) {}

void StreamSession::append(const std::string & bytes) {
    if (bytes.empty()) {
        return;
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (done_) {
            return;
        }
        buffer_ += bytes;
        if (buffer_.size() > max_bytes_) {
            const size_t drop = buffer_.size() - max_bytes_;
            buffer_.erase(0, drop);
            dropped_ += drop;
        }
    }
    changed_.notify_all();
}

void StreamSession::finish() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (done_) {
            return;
        }
        done_ = true;
        completed_at_ = unix_seconds();
    }
    changed_.notify_all();
}

void StreamSession::cancel() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        cancelled_ = true;
    }
    finish();
}

bool StreamSession::cancelled() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cancelled_;
}

bool StreamSession::done() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return done_;
}

size_t StreamSession::total_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return dropped_ + buffer_.size();
}

size_t StreamSession::dropped_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return dropped_;
}

int64_t StreamSession::completed_at() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return completed_at_;
}

bool StreamSession::owner_serving() const {
    auto owner = owner_.lock();
    return owner && owner->state() == InstanceState::ready;
}

StreamSession::Read StreamSession::read(size_t & offset, std::string & out, const std::function<bool()> & should_stop) {
    std::unique_lock<std::mutex> lock(mutex_);
    while (true) {
        if (offset < dropped_) {
            return Read::offset_lost;
        }
        const size_t end = dropped_ + buffer_.size();
        if (offset < end) {
            out.append(buffer_, offset - dropped_, std::string::npos);
            offset = end;
            return Read::bytes;
        }
        if (done_) {
            return Read::finished;
        }
        if (should_stop && should_stop()) {
            return Read::stopped;
        }
        changed_.wait_for(lock, reader_wake);
    }
}

uint64_t StreamSessions::expect(const std::string & conversation) {
    std::lock_guard<std::mutex> lock(mutex_);
    Conversation & c = conversations_[conversation];
    c.ticket = next_ticket_++;
    c.waiting = true;
    return c.ticket;
}

bool StreamSessions::wanted(const std::string & conversation, uint64_t ticket) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = conversations_.find(conversation);
    return it != conversations_.end() && it->second.ticket == ticket;
}

std::shared_ptr<StreamSession> StreamSessions::open(const std::string & conversation, uint64_t ticket,
                                                    std::weak_ptr<ModelInstance> owner) {
    std::vector<std::shared_ptr<StreamSession>> ended;
    std::shared_ptr<StreamSession> fresh;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        sweep_locked(ended);
        auto it = conversations_.find(conversation);
        if (it == conversations_.end() || it->second.ticket != ticket) {
            return nullptr;
        }
        fresh = std::make_shared<StreamSession>(conversation, std::move(owner), max_session_bytes);
        if (it->second.session) {
            ended.push_back(std::move(it->second.session));  // one live session per conversation
        }
        it->second.session = fresh;
        it->second.waiting = false;
    }
    end_all(ended);
    return fresh;
}

void StreamSessions::close(const std::string & conversation, uint64_t ticket) {
    std::shared_ptr<StreamSession> ended;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = conversations_.find(conversation);
        if (it == conversations_.end() || it->second.ticket != ticket) {
            return;  // a newer request or a stop owns the conversation now
        }
        ended = std::move(it->second.session);
        conversations_.erase(it);
    }
    if (ended) {
        ended->finish();
    }
}

std::shared_ptr<StreamSession> StreamSessions::find(const std::string & conversation) {
    std::vector<std::shared_ptr<StreamSession>> ended;
    std::shared_ptr<StreamSession> found;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        sweep_locked(ended);
        auto it = conversations_.find(conversation);
        if (it != conversations_.end()) {
            found = it->second.session;
        }
    }
    end_all(ended);
    return found;
}

bool StreamSessions::waiting_for_model(const std::string & conversation) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = conversations_.find(conversation);
    return it != conversations_.end() && it->second.waiting;
}

std::vector<std::shared_ptr<StreamSession>> StreamSessions::lookup(const std::vector<std::string> & asked) {
    std::vector<std::shared_ptr<StreamSession>> ended;
    std::vector<std::shared_ptr<StreamSession>> out;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        sweep_locked(ended);
        for (const auto & id : asked) {
            const std::string per_model = id + "::";
            for (const auto & [conversation, c] : conversations_) {
                if (c.session && (conversation == id || conversation.compare(0, per_model.size(), per_model) == 0)) {
                    out.push_back(c.session);
                }
            }
        }
    }
    end_all(ended);
    return out;
}

void StreamSessions::stop(const std::string & conversation) {
    std::shared_ptr<StreamSession> ended;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = conversations_.find(conversation);
        if (it == conversations_.end()) {
            return;
        }
        ended = std::move(it->second.session);
        conversations_.erase(it);  // a request still waiting for its model sees its ticket stale
    }
    if (ended) {
        ended->cancel();
    }
}

void StreamSessions::close_all() {
    std::vector<std::shared_ptr<StreamSession>> ended;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto & [conversation, c] : conversations_) {
            if (c.session) {
                ended.push_back(std::move(c.session));
            }
        }
        conversations_.clear();
    }
    end_all(ended);
}

void StreamSessions::sweep_locked(std::vector<std::shared_ptr<StreamSession>> & ended) {
    const int64_t expired = unix_seconds() - keep_finished_s;
    for (auto it = conversations_.begin(); it != conversations_.end();) {
        Conversation & c = it->second;
        if (c.session) {
            const int64_t completed = c.session->completed_at();
            if ((completed != 0 && completed <= expired) || !c.session->owner_serving()) {
                ended.push_back(std::move(c.session));
            }
        }
        if (!c.session && !c.waiting) {
            it = conversations_.erase(it);
        } else {
            ++it;
        }
    }
}

}  // namespace llamaproc
