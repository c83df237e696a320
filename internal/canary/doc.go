// Package canary is the Canary state machine: a pure function from the spec, the persisted
// status, what the controller observed and the current time to the next status and the
// actions the controller must carry out.
//
//	Step(spec, status, observations, now) -> (status', actions)
//
// It reads nothing and writes nothing: the controller observes the target Deployment, the
// <name>-primary Deployment and the VirtualService, runs a metrics check when Due says one
// is due, calls Step, applies the actions and patches the status. Every timer lives in the
// status, so a restarted operator resumes exactly where the last status patch left off.
//
// # Phases
//
//	Initializing       the primary is created from the target; the target serves all traffic
//	                   (weight 100) until the primary is ready.
//	Stable             the primary serves the target's revision (stableRevision); weight 0.
//	Progressing        a new revision (canaryRevision) gets the weights of spec.analysis one
//	                   step at a time; each step is judged by checks.
//	Restarting         a newer revision replaced the canary mid-rollout: the weight steps
//	                   back down the configured weights to the first step's, then the
//	                   analysis restarts there (see Supersede below).
//	AwaitingPromotion  every step passed and promotion is Gated: the canary keeps its final
//	                   weight, and its checks, until a new promoteToken.
//	Promoting          the primary rolls out the canary's revision (weight held).
//	Finalizing         the primary runs the new revision; traffic returns to it (weight 0).
//	Succeeded          the rollout is complete; like Stable.
//	RollingBack        failed (failureThreshold), no data (noData action Rollback) or
//	                   aborted: weight 0 at once.
//	Failed             traffic is back on the primary; waits for a retryToken or a new revision.
//	Paused             no data too many times in a row (noData action Pause): the weight is
//	                   held, no checks run, until a retryToken resumes the step.
//
// # Transitions
//
// Rules are tried in this order on every pass; Step applies them until none fires (a
// fixpoint), so calling it again with the same inputs changes nothing.
//
//	from                          when                                        to
//	(new)                         always                                      Initializing
//	Initializing                  primary ready with the target's revision    Stable
//	Progressing, Restarting,      spec.abort                                  RollingBack (Aborted)
//	  AwaitingPromotion, Paused
//	any rollout phase             target revision == stableRevision           Stable (Reverted)
//	any rollout phase             target revision is new                      Restarting or Progressing
//	                                                                            step 0 (Superseded)
//	Stable, Succeeded, Failed     target revision is new, no abort            Progressing step 0
//	Failed                        target back at stableRevision               Stable (Reverted)
//	Failed                        new retryToken, no abort                    Progressing step 0 (Retried)
//	Progressing, AwaitingProm.    failed checks at the step >= threshold      RollingBack (AnalysisFailed)
//	Progressing, AwaitingProm.    no-data checks in a row >= noData.limit     RollingBack / Paused (NoData),
//	                                                                            or Pass: counted as passed
//	Progressing                   passed checks >= checksPerStep              next step; after the last:
//	                                                                            AwaitingPromotion (Gated)
//	                                                                            or Promoting
//	AwaitingPromotion             new promoteToken, or promotion Automatic    Promoting
//	Paused                        new retryToken, no abort                    Progressing, same step
//	Restarting                    at the first step's weight, applied         Progressing step 0 (Restarted)
//	Promoting                     primary ready with the canary's revision    Finalizing
//	Finalizing                    VirtualService reads back weight 0          Succeeded
//	RollingBack                   VirtualService reads back weight 0          Failed
//
// "Rollout phases" are Progressing, Restarting, AwaitingPromotion, Paused, Promoting,
// Finalizing and RollingBack. In Promoting and Finalizing spec.abort is ignored: the
// primary already runs (or is rolling out) the canary's revision.
//
// # Timing
//
// A step's life, each moment stored in status as a whole second rounded up (what the API
// server keeps, and never early):
//
//	stepStartTime    the step's weight is requested. Raising the weight waits until the
//	                 canary (the target) is ready: no traffic to pods that cannot serve it.
//	settleStartTime  the VirtualService reads back the step's weight and the canary is ready.
//	nextCheckTime    settleStartTime + settleTime (default: one interval; at least a second),
//	                 then each check schedules the next one interval after it ran.
//
// Due(spec, status, now) is true when nextCheckTime has passed; the controller queries
// Prometheus only then and passes the results to Step, which records the check and moves
// nextCheckTime forward. A check offered when none was due as the call began is ignored
// (it measured traffic from before settling ended), so a repeated pass
// never counts a check twice, and a check that fell due while the operator was down runs
// once when it comes back (not once per missed interval: they would all measure the same
// window). If the VirtualService later reads back another weight (a hand edit), the
// desired weight is applied again and the settle time restarts: measurements are only
// ever taken after settling at the intended weight.
//
// The desired weight (Actions.Weight, DesiredWeight) is a function of the spec and the
// persisted phase and step only; the weight read back from the VirtualService is reported
// in status.appliedWeight and only decides when settling starts and when traffic has
// left the canary.
//
// # Checks
//
// A check's outcome is Failed if any metric has a value outside its thresholds, else Error
// if any query failed, else NoData if any metric had no value (empty, NaN), else Passed.
// When minRequestCount is set and the canary served fewer requests (or the count is
// missing) the check is NoData whatever the metrics say; if counting requests failed it
// is Error. Only Failed counts toward failureThreshold (per step). NoData holds the step
// and, after noData.limit in a row, takes noData.action. Error holds the step and is retried
// at the next interval; three in a row set Stalled=True (MetricQueryFailed).
//
// # Supersede
//
// When the target's pod template changes mid-rollout, Kubernetes rolls the target's pods
// to the new, untested revision at once, at whatever weight the canary had. The machine
// then restarts the analysis from the first step and brings traffic back to the primary
// gradually, not in one jump that could swamp a primary scaled for part of the traffic:
//
//   - at or below the first step's weight: Progressing at step 0 with fresh counters and
//     timers (settling waits for the new revision to be ready);
//   - above it: Restarting. The weight drops at once to the next lower configured weight,
//     then one configured weight lower each time the previous one has been read back from
//     the VirtualService for a settle time and the primary is ready, down to the first
//     step's weight; then Progressing at step 0, settling afresh before the first check.
//
// For example weights [10, 25, 50, 75] superseded at 75: 50 at once, then 25, then 10,
// then the analysis restarts at 10. No checks run while Restarting; abort still rolls
// back at once. In Promoting, once the primary's template is the canary's, that revision
// becomes the stable one before the new revision is treated as above. A target reverted
// to the stable revision ends the rollout (Stable, weight 0): both sides run the same pods.
//
// # Tokens and abort
//
// promoteToken and retryToken act when they differ from the last handled value in status
// (lastPromoteToken, lastRetryToken), judged against the phase the Canary was in when the
// call began: promoteToken in AwaitingPromotion, retryToken in Failed or Paused without
// abort. A token arriving in any other phase is recorded as handled with a warning event,
// so a token set early never approves a later rollout by surprise. spec.abort is a level:
// while true, rollouts in flight roll back and new revisions wait.
//
// # Scaling the target
//
// The target is scaled down only in Stable, Succeeded and Failed, and only once the
// VirtualService reads back weight 0: traffic leaves the canary before its pods do.
package canary
