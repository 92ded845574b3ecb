package rules

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

// benchKinds are the kinds of rule the benchmark sets cycle through, and
// for each the message that matches rule i of that kind.
var benchKinds = []struct {
	name string
	rule func(i int) string
	msg  func(i int) *wechat.Message
}{
	{"equals",
		func(i int) string { return fmt.Sprintf("{text: {equals: [kw%d, 关键词%d]}}", i, i) },
		func(i int) *wechat.Message { return textMsg(fmt.Sprintf("KW%d", i)) }},
	{"contains",
		func(i int) string { return fmt.Sprintf("{text: {contains: c%dx}}", i) },
		func(i int) *wechat.Message { return textMsg(fmt.Sprintf("我想问一下 c%dx 的情况", i)) }},
	{"prefix",
		func(i int) string { return fmt.Sprintf("{text: {prefix: p%d-}}", i) },
		func(i int) *wechat.Message { return textMsg(fmt.Sprintf("p%d-订单查询", i)) }},
	{"regex",
		func(i int) string { return fmt.Sprintf(`{text: {regex: '^order%d-(\d+)$'}}`, i) },
		func(i int) *wechat.Message { return textMsg(fmt.Sprintf("order%d-123456", i)) }},
	{"event_key",
		func(i int) string { return fmt.Sprintf("{event: CLICK, event_key: K%d}", i) },
		func(i int) *wechat.Message { return eventMsg("CLICK", fmt.Sprintf("K%d", i)) }},
}

// benchRules returns a file of n rules cycling through benchKinds.
func benchRules(n int) []byte {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range n {
		k := benchKinds[i%len(benchKinds)]
		fmt.Fprintf(&b, "  - name: r%d\n    match: %s\n    reply: [{text: \"reply %d {{.FromUserName}}\"}]\n", i, k.rule(i), i)
	}
	b.WriteString("default:\n  reply: [{text: default}]\n")
	return []byte(b.String())
}

// lastOfKind is the number of the last rule of kind k in a set of n.
func lastOfKind(n, k int) int {
	i := n - 1
	for i%len(benchKinds) != k {
		i--
	}
	return i
}

var benchSizes = []int{10, 1000, 10000}

// BenchmarkMatch measures finding the matching rule when it is the last of
// its kind in the file: a linear scan would pay for every rule before it.
func BenchmarkMatch(b *testing.B) {
	for _, n := range benchSizes {
		s, err := Parse("bench.yaml", benchRules(n))
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC() // collect the loader's garbage now, not inside the timings
		for k, kind := range benchKinds {
			want := lastOfKind(n, k)
			m := kind.msg(want)
			b.Run(fmt.Sprintf("rules=%d/%s", n, kind.name), func(b *testing.B) {
				in := newInput(m)
				if got := s.match(&in, nil); !slices.Equal(got, []int32{int32(want)}) {
					b.Fatalf("matched %v, want [%d]", got, want)
				}
				var buf [8]int32
				b.ReportAllocs()
				for b.Loop() {
					in := newInput(m)
					s.match(&in, buf[:0])
				}
			})
		}
	}
}

// BenchmarkDecide is Decide as the server calls it: match and render.
func BenchmarkDecide(b *testing.B) {
	for _, n := range benchSizes {
		s, err := Parse("bench.yaml", benchRules(n))
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC() // collect the loader's garbage now, not inside the timings
		cases := []struct {
			name string
			msg  *wechat.Message
			want string
		}{
			{"last-rule", benchKinds[(n-1)%len(benchKinds)].msg(n - 1), fmt.Sprintf("r%d", n-1)},
			{"no-match", textMsg("没有规则匹配这句话"), "default"},
		}
		for _, c := range cases {
			b.Run(fmt.Sprintf("rules=%d/%s", n, c.name), func(b *testing.B) {
				if d := s.Decide(c.msg); !slices.Equal(d.Rules, []string{c.want}) || len(d.Replies) != 1 {
					b.Fatalf("decision %+v, want rule %s with one reply", d, c.want)
				}
				b.ReportAllocs()
				for b.Loop() {
					s.Decide(c.msg)
				}
			})
		}
	}
}

// BenchmarkLoad measures loading a file of 10,000 rules: what a reload
// costs.
func BenchmarkLoad(b *testing.B) {
	data := benchRules(10000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		s, err := Parse("bench.yaml", data)
		if err != nil || s.Len() != 10000 {
			b.Fatalf("Parse: %v", err)
		}
	}
}

// BenchmarkLoadInvalid measures checking a file of 10,000 rules with a
// problem in each: what `wxreply check` and a failed reload cost. (Finding
// what a problem spoils was quadratic once: 13 s for this file.)
func BenchmarkLoadInvalid(b *testing.B) {
	var src strings.Builder
	src.WriteString("rules:\n")
	for i := range 10000 {
		fmt.Fprintf(&src, "  - {name: r%d, match: {event: []}, reply: [{text: {content: [x]}}, {image: {}}]}\n", i)
	}
	data := []byte(src.String())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var le *LoadError
		if _, err := Parse("bench.yaml", data); !errors.As(err, &le) || len(le.Problems) != 30000 {
			b.Fatalf("Parse: %d problems, want 30000", len(le.Problems))
		}
	}
}

// BenchmarkLoadContinue measures loading 10,000 rules that all say
// continue, the worst case of the per-interaction cap check, which
// compares each rule with those before it that may match the same
// message (bounded by capPairBudget).
func BenchmarkLoadContinue(b *testing.B) {
	var src strings.Builder
	src.WriteString("rules:\n")
	for i := range 10000 {
		fmt.Fprintf(&src, "  - {name: r%d, match: {event: CLICK, event_key: K%d}, continue: true, reply: [{text: a}]}\n", i, i)
	}
	data := []byte(src.String())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse("bench.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}
