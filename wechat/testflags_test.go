package wechat

import "flag"

// update rewrites golden files (testdata/reply) and the generated
// encrypted captures (test/testdata/safe, compat) instead of comparing.
var update = flag.Bool("update", false, "rewrite golden files and generated captures")
