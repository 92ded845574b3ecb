package delivery_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// An item that does not decode (written by another version, or damaged)
// fails with the engine's reason and no call, reported under its ID, and
// the user's next item goes out. The dispatcher finds items another
// instance recorded without being woken, within PollEvery.
func TestUndecodableItemFails(t *testing.T) {
	srv := fakeAPI(t)
	st := memStore(t)
	e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), Store: st})
	good, err := e.Accept(context.Background(), delivery.Request{}) // nothing: recorded nothing
	if err != nil || len(good.IDs) != 0 {
		t.Fatalf("empty Accept = %+v, %v", good, err)
	}
	// Straight into the store, as another instance would.
	if _, err := st.Accept(context.Background(), &store.Batch{Now: time.Now(), Items: []store.NewItem{
		{ID: "bad", OpenID: "u", MsgType: "text", Rule: "r", Payload: []byte("not json")},
		{ID: "good", OpenID: "u", MsgType: "text", Rule: "r", Payload: []byte(`{"custom":{"touser":"u","msgtype":"text","text":{"content":"hi"}}}`)},
	}}); err != nil {
		t.Fatal(err)
	}
	res.wait(t, 2)
	if r := res.get("bad"); len(r) != 1 || r[0].Delivered || r[0].Reason != delivery.ReasonUndecodable || r[0].OpenID != "u" || r[0].Rule != "r" {
		t.Errorf("bad: results %+v", r)
	}
	if s := status(t, e, "bad"); s.State != store.StateFailed || s.Reason != delivery.ReasonUndecodable || s.Attempts != 0 {
		t.Errorf("bad: %+v", s)
	}
	if s := status(t, e, "good"); s.State != store.StateDelivered {
		t.Errorf("good: %+v", s)
	}
	if got := texts(srv, "u"); !reflect.DeepEqual(got, []string{"hi"}) {
		t.Errorf("u received %v", got)
	}
}

// What a message carries survives the store: every field WeChat takes,
// and the local files, which WeChat never sees.
func TestPayloadRoundTrip(t *testing.T) {
	srv := fakeAPI(t)
	thumb := writeFile(t, "t.jpg", "fake thumb")
	e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil)})
	msgs := []*wechat.CustomMessage{
		{ToUser: "u", MsgType: "text", Text: &wechat.Text{Content: "<a href=\"https://example.com/?a=1&b=2\">link</a> 你好"}},
		{ToUser: "u", MsgType: "news", News: &wechat.News{Articles: []wechat.Article{{Title: "t", Description: "d", URL: "https://e/", PicURL: "https://e/p"}}}},
		{ToUser: "u", MsgType: "msgmenu", MsgMenu: &wechat.MsgMenu{HeadContent: "h", List: []wechat.MsgMenuItem{{ID: "1", Content: "yes"}}, TailContent: "t"}},
		{ToUser: "u", MsgType: "music", Music: &wechat.Music{Title: "m", MusicURL: "https://m/a", HQMusicURL: "https://m/b", ThumbFile: thumb}},
		{ToUser: "u", MsgType: "wxcard", WxCard: &wechat.WxCard{CardID: "c"}, CustomService: &wechat.CustomService{KfAccount: "kf@x"}},
	}
	var items []wechat.Outgoing
	for _, m := range msgs {
		items = append(items, wechat.Outgoing{Custom: m})
	}
	accept(t, e, items...)
	res.wait(t, len(msgs))
	got := srv.Accepted(wechat.PathCustomSend)
	if len(got) != len(msgs) {
		t.Fatalf("%d sent", len(got))
	}
	up := srv.Accepted(wechat.PathMediaUpload)
	if len(up) != 1 {
		t.Fatalf("%d uploads", len(up))
	}
	for i, m := range msgs {
		want := *m
		if want.Music != nil {
			mu := *want.Music
			mu.ThumbFile, mu.ThumbMediaID = "", up[0].MediaID
			want.Music = &mu
		}
		if !reflect.DeepEqual(got[i].Custom, &want) {
			t.Errorf("message %d: sent %+v, want %+v", i, got[i].Custom, &want)
		}
	}
	if string(got[0].Body) != `{"touser":"u","msgtype":"text","text":{"content":"<a href=\"https://example.com/?a=1&b=2\">link</a> 你好"}}` {
		t.Errorf("body = %s: HTML escaped, or changed", got[0].Body)
	}
}
