// Package webhooks will hold the operator's admission webhooks: sidecar injection for pods
// and validation of meshplane's kinds beyond what CEL expresses. The manager serves them on
// port 9443 (config/webhook).
package webhooks
