//go:build !faultinject

package jobs

// FaultsBuilt reports whether this binary was built with fault injection
// (-tags faultinject). A production build is not: its workers cannot be
// made to fail on purpose.
const FaultsBuilt = false

// withFaults is the identity in a production build.
func withFaults(_ int, next Engine) Engine { return next }
