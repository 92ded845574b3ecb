// Package rules is wxreply's rule engine: it loads rules.yaml, reports
// every problem in it with its position, indexes the rules so that matching
// costs the same for ten rules or ten thousand, decides which replies an
// inbound message gets, and reloads the file when it changes.
//
// A Set is one loaded, validated, immutable rule file; Set.Decide answers a
// message. An Engine holds the current Set and swaps it atomically when the
// file changes (Watch) or on demand (Reload, wired to SIGHUP).
package rules
