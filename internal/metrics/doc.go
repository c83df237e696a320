// Package metrics exports what an operator of the mesh graphs and alerts on, besides
// controller-runtime's own metrics, on the manager's metrics endpoint (controller-runtime's
// metrics.Registry).
//
// # Status metrics
//
// StatusCollector works the way kube-state-metrics does: on every scrape it lists the
// reported kinds from the manager's cache and turns their status into gauges. Nothing is
// recorded between scrapes, so the controllers carry no metrics code, a deleted object's
// series disappear with it, and the numbers are the ones `kubectl get -o yaml` shows.
// The collector is registered only while its replica leads (SetupWithManager), so with
// several replicas exactly one reports each object.
//
//	meshplane_controlplane_ready{control_plane}                         Ready condition True (1) or not (0)
//	meshplane_controlplane_status_condition{control_plane,condition,status}
//	                                                                    per condition, one series per status
//	                                                                    (true, false, unknown), 1 for the current
//	meshplane_controlplane_component_ready{control_plane,namespace,deployment,component}
//	meshplane_controlplane_revision_ready{control_plane,revision,version}
//	meshplane_controlplane_revision_injected_pods{control_plane,revision}
//	meshplane_controlplane_ca_expiry_timestamp_seconds{control_plane}   plugged or cert-manager CA only
//	meshplane_canary_phase{namespace,canary,phase}                      one series per phase, 1 for the current
//	meshplane_canary_status_reason{namespace,canary,reason}             1, for the current status.reason
//	meshplane_canary_target_weight{namespace,canary}                    percent
//	meshplane_canary_applied_weight{namespace,canary}                   percent, once the VirtualService exists
//	meshplane_canary_last_check_outcome{namespace,canary,outcome}       one series per outcome, 1 for the last check's
//	meshplane_canary_last_check_timestamp_seconds{namespace,canary}
//	meshplane_status_collector_errors_total{kind}                       lists from the cache that failed
//
// Enumerations (phases, check outcomes, condition statuses) are labels with one series per
// value, as kube-state-metrics exports a pod's phase, rather than numeric codes: a query
// reads `meshplane_canary_phase{phase="Failed"} == 1`, not a number to look up, and adding a
// phase does not renumber the others.
//
// # Injection webhook metrics
//
// Recorded by the injection handler as it answers (ObserveInjection), on every replica, since
// each one serves admissions:
//
//	meshplane_injection_webhook_admissions_total{control_plane,revision,outcome}  counter; outcome is
//	                                                                    injected, skipped, rejected or error
//	meshplane_injection_webhook_duration_seconds{control_plane,revision}          histogram of the time to answer
//
// A revision's admission counters exist at 0 for every outcome from the first scrape that
// reports the revision (and the first admission), so rate() counts its first admissions.
//
// # Cardinality
//
// Every label value comes from a bounded set: object names of the reported kinds (never pod
// names or revisions' pod-template hashes), enumerations of the API, and the control plane
// an admission was answered for, set only once that MeshControlPlane was found, so a request
// path naming no control plane cannot mint series.
//
// # Reserved for RemoteCluster
//
// RemoteCluster, once it exists, will report, from its status, in a file of its own registering a
// source (see controlplane.go):
//
//	meshplane_remotecluster_reachable{remote_cluster}                   1 when the last probe succeeded
//	meshplane_remotecluster_credential_expiry_timestamp_seconds{remote_cluster}
//
// Their alerts (remote cluster unreachable, credential expiring) ship with them, not before:
// config/prometheus names only metrics that exist, which the tests check.
package metrics
