//go:build !faultinject

package jobs

import "time"

// FaultsBuilt reports whether this binary was built with fault injection
// (-tags faultinject). A production build is not: its workers cannot be
// made to fail on purpose.
const FaultsBuilt = false

// withFaults is the identity in a production build.
func withFaults(_ int, next Engine) Engine { return next }

// faultRetryDelay is 0 in a production build: River's retry policy decides
// every retry.
func faultRetryDelay(error) time.Duration { return 0 }
