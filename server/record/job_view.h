// What clients see of a job: the tl.v1.Job built from the server's record.
#pragma once

#include <string>

#include "server/record/job_record.pb.h"
#include "tl/v1/jobs.pb.h"

namespace tl::server {

// Every field users read, copied from `record`; `pending_reason` is the
// scheduler's answer of the moment to why a queued job waits. Fields only
// the scheduler uses (last_event_sequence) stay behind.
tl::v1::Job ToApiJob(const JobRecord& record, const std::string& pending_reason = "");

}  // namespace tl::server
