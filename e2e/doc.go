// Package e2e runs the built cosign binary against real parts: a CNCF
// distribution registry (Debian's docker-registry) on a free loopback port
// with its own configuration and storage, openssl, and later skopeo and
// containerd. Its exported helpers (harness.go) start those parts, run
// commands as a user would, and load the interop vectors made by sigstore
// cosign; the tests live in the package's _test files.
//
// A test names what it needs with Require. On a developer machine a missing
// part skips the test with a banner in the log; with CI=true it fails the
// test, so CI never passes by skipping.
package e2e
