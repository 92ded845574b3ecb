// Command silenceper is the peer SDK that wxreply's callback path is
// measured against (test/peers_wrk_test.go): silenceper/wechat's
// official-account server, the most used Go WeChat SDK, answering every
// callback with its nil reply ("success"). It lives in a module of its
// own so that wxreply's go.mod never gains the SDK.
//
//	WXREPLY_PEER_ADDR=127.0.0.1:8090 WECHAT_TOKEN=... go run .
package main

import (
	"log"
	"net/http"
	"os"

	"github.com/silenceper/wechat/v2"
	"github.com/silenceper/wechat/v2/cache"
	offconfig "github.com/silenceper/wechat/v2/officialaccount/config"
	"github.com/silenceper/wechat/v2/officialaccount/message"
	"github.com/sirupsen/logrus"
)

func main() {
	// The SDK logs through logrus; at its default level (info) a
	// callback writes no line, as wxreply's INFO writes its one.
	logrus.SetOutput(os.Stderr)
	wc := wechat.NewWechat()
	oa := wc.GetOfficialAccount(&offconfig.Config{
		AppID:          os.Getenv("WECHAT_APPID"),
		AppSecret:      "unused",
		Token:          os.Getenv("WECHAT_TOKEN"),
		EncodingAESKey: os.Getenv("WECHAT_ENCODING_AES_KEY"),
		Cache:          cache.NewMemory(),
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/wechat", func(w http.ResponseWriter, r *http.Request) {
		srv := oa.GetServer(r, w)
		srv.SetMessageHandler(func(*message.MixMessage) *message.Reply { return nil })
		if err := srv.Serve(); err != nil {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		_ = srv.Send()
	})
	mux.HandleFunc("GET /healthz", func(http.ResponseWriter, *http.Request) {})
	log.Fatal(http.ListenAndServe(os.Getenv("WXREPLY_PEER_ADDR"), mux))
}
