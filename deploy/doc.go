// Package deploy holds the deployment manifests of cosign proxy (under
// kubernetes/) and the tests that check them: every manifest decodes
// strictly into the Kubernetes API types, and the proxy configuration they
// ship is one the proxy accepts. It is a module of its own so that the
// Kubernetes API packages stay out of the cosign binary's go.mod.
package deploy
