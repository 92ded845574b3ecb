package wechat

import "testing"

// FuzzParseDifferential checks that the fast path of flatxml.go, and
// ParseMessage as a whole, agree with parseMessageStd on every input:
// the same Message (reflect.DeepEqual, NaN equal to NaN) and the same
// class of error.
func FuzzParseDifferential(f *testing.F) {
	addCaptureSeeds(f, func(_ string, body []byte) { f.Add(body) })
	for _, tc := range flatCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDifferential(t, body)
	})
}
