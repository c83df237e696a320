/*
Copyright 2026 The meshplane Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package main

import (
	"slices"

	"github.com/cert-manager/cert-manager/pkg/controller"

	// cert-manager's controllers register themselves with pkg/controller when imported.
	// Only the ones below are linked in: no ACME, Vault or Venafi, no ingress/gateway shims,
	// no CertificateSigningRequest controllers.
	crapprover "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	certmetrics "github.com/cert-manager/cert-manager/pkg/controller/certificates/metrics"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"

	// Issuer implementations, looked up by type by the issuers/clusterissuers controllers
	// (they set an Issuer's Ready condition after checking its configuration).
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// defaultControllers is what runs unless --controllers says otherwise: the parts of
// cert-manager's default set that serve SelfSigned and CA issuers.
func defaultControllers() []string {
	return []string{
		// Issuer / ClusterIssuer Ready conditions.
		issuers.ControllerName,
		clusterissuers.ControllerName,
		// The Certificate pipeline: trigger decides when to issue, key manager creates the
		// next private key, request manager creates the CertificateRequest, issuing writes
		// the signed result into the Secret, readiness sets Ready, revision manager prunes
		// old CertificateRequests.
		trigger.ControllerName,
		keymanager.ControllerName,
		requestmanager.ControllerName,
		issuing.ControllerName,
		readiness.ControllerName,
		revisionmanager.ControllerName,
		certmetrics.ControllerName,
		// CertificateRequests: signers wait for the Approved condition, which cert-manager's
		// built-in approver sets when no policy engine is installed.
		crapprover.ControllerName,
		crselfsigned.CRControllerName,
		crca.CRControllerName,
	}
}

// supportedControllers lists every controller linked into this binary.
func supportedControllers() []string {
	var names []string
	for n := range controller.Known() {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
