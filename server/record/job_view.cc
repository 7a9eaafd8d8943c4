#include "server/record/job_view.h"

namespace tl::server {

tl::v1::Job ToApiJob(const JobRecord& record, const std::string& pending_reason) {
  tl::v1::Job job;
  job.set_id(record.id());
  *job.mutable_spec() = record.spec();
  job.set_state(record.state());
  job.set_attempt(record.attempt());
  job.set_owner(record.owner());
  if (record.has_create_time()) *job.mutable_create_time() = record.create_time();
  if (record.has_start_time()) *job.mutable_start_time() = record.start_time();
  if (record.has_end_time()) *job.mutable_end_time() = record.end_time();
  if (record.has_update_time()) *job.mutable_update_time() = record.update_time();
  job.set_error(record.error());
  if (record.has_result()) *job.mutable_result() = record.result();
  job.set_worker_id(record.worker_id());
  job.set_epoch(record.epoch());
  job.set_cancel_requested(record.cancel_requested());
  job.set_pause_requested(record.pause_requested());
  job.set_failures(record.failures());
  job.set_pending_reason(pending_reason);
  job.set_request_id(record.request_id());
  *job.mutable_replica_worker_ids() = record.replica_worker_ids();
  job.set_sweep_id(record.sweep_id());
  job.set_sweep_trial(record.sweep_trial());
  return job;
}

}  // namespace tl::server
