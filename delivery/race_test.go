//go:build race

package delivery_test

// raceEnabled: the race detector slows sends several times over, so the
// throughput contract is checked only without it.
const raceEnabled = true
