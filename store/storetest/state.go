package storetest

import (
	"errors"
	"time"

	"github.com/wxreply/wxreply/store"
)

// What the store tells: windows, statuses, template reports, the count of
// waiting items, and that a closed store says so.

func (f *fx) touch(openid string, now time.Time) {
	f.t.Helper()
	f.acceptBatch(&store.Batch{Now: now, Touch: openid})
}

func (f *fx) closeWindow(openid string, asked, now time.Time) {
	f.t.Helper()
	if err := f.s.CloseWindow(f.ctx, openid, asked, now); err != nil {
		f.t.Fatalf("CloseWindow: %v", err)
	}
}

func (f *fx) wantWindow(what, openid string, want store.Window) {
	f.t.Helper()
	got := f.window(openid)
	if got.Known != want.Known || got.Closed != want.Closed || !got.Last.Equal(want.Last) {
		f.t.Errorf("%s: Window(%s) = {Known %v Last %s Closed %v}, want {Known %v Last %s Closed %v}", what, openid,
			got.Known, show(got.Last), got.Closed, want.Known, show(want.Last), want.Closed)
	}
}

func testWindow(f *fx) {
	f.wantWindow("never seen", "u1", store.Window{})
	f.touch("u1", base)
	f.wantWindow("after a touch", "u1", store.Window{Known: true, Last: base})

	// 45015 to a call made after the interaction: closed.
	f.closeWindow("u1", at(time.Hour), at(time.Hour+time.Second))
	f.wantWindow("after 45015", "u1", store.Window{Known: true, Last: base, Closed: true})

	// A later interaction reopens it.
	f.touch("u1", at(2*time.Hour))
	f.wantWindow("after a new touch", "u1", store.Window{Known: true, Last: at(2 * time.Hour)})

	// A 45015 answered to a call made before that interaction does not
	// close the window the interaction opened.
	f.closeWindow("u1", at(2*time.Hour-time.Second), at(2*time.Hour+time.Second))
	f.wantWindow("after a stale 45015", "u1", store.Window{Known: true, Last: at(2 * time.Hour)})

	// A replayed older interaction does not move Last back.
	f.touch("u1", at(time.Hour))
	f.wantWindow("after an older touch", "u1", store.Window{Known: true, Last: at(2 * time.Hour)})

	// Closed until an interaction later than the call: one later than
	// Last but not than the call (another instance's clock) does not
	// reopen it.
	f.closeWindow("u1", at(4*time.Hour), at(4*time.Hour+time.Second))
	f.touch("u1", at(3*time.Hour))
	if w := f.window("u1"); !w.Closed {
		f.t.Errorf("an interaction before the 45015's call reopened the window: %+v", w)
	}
	f.touch("u1", at(4*time.Hour+time.Millisecond))
	f.wantWindow("after an interaction later than the call", "u1", store.Window{Known: true, Last: at(4*time.Hour + time.Millisecond)})

	// A 45015 for a user never seen is known, and closed.
	f.closeWindow("u2", base, base)
	if w := f.window("u2"); !w.Known || !w.Closed {
		f.t.Errorf("45015 for an unseen user: %+v, want Known and Closed", w)
	}
	f.touch("u2", at(time.Second))
	f.wantWindow("unseen user after a touch", "u2", store.Window{Known: true, Last: at(time.Second)})

	// Within a minute of the last one recorded, a touch may write nothing
	// (the Last known to the minute is enough), but one after a 45015
	// still reopens the window, and the window is still open after.
	f.touch("u3", base)
	f.touch("u3", at(10*time.Second))
	f.closeWindow("u3", at(20*time.Second), at(21*time.Second))
	f.touch("u3", at(30*time.Second))
	f.wantWindow("a touch within a minute, after a 45015", "u3", store.Window{Known: true, Last: at(30 * time.Second)})
	f.touch("u3", at(40*time.Second))
	if w := f.window("u3"); !w.Known || w.Closed {
		f.t.Errorf("a touch within a minute of the reopening one: %+v, want open", w)
	}
}

func testClaimCarriesWindow(f *fx) {
	f.acceptBatch(&store.Batch{Now: base, Touch: "u1", Items: []store.NewItem{item("a", "u1"), item("b", "u1")}})
	f.accept(base, item("x", "u2"))
	for _, c := range f.claimAll(base) {
		switch c.Item.OpenID {
		case "u1":
			if !c.Window.Known || !c.Window.Last.Equal(base) || c.Window.Closed {
				f.t.Errorf("u1's claim: Window %+v, want open since base", c.Window)
			}
			f.complete(c, base)
		case "u2":
			if c.Window.Known {
				f.t.Errorf("u2's claim: Window %+v, want unknown", c.Window)
			}
		}
	}
	f.closeWindow("u1", at(time.Second), at(time.Second))
	c := f.claimOne(at(time.Second), "b")
	if !c.Window.Known || !c.Window.Closed {
		f.t.Errorf("claim after 45015: Window %+v, want closed", c.Window)
	}
}

func testStatus(f *fx) {
	f.noStatus("nope")
	a := item("a", "u1")
	f.accept(base, a, item("b", "u1"))
	st := f.mustStatus("a")
	if st.ID != "a" || st.State != store.StateQueued || st.OpenID != a.OpenID || st.Rule != a.Rule ||
		st.InMsgID != a.InMsgID || st.MsgType != a.MsgType || st.Attempts != 0 {
		f.t.Errorf("new item: %+v", st)
	}
	sameTime(f.t, "Created", st.Created, base)
	sameTime(f.t, "NextAt while waiting", st.NextAt, base)

	c := f.claimOne(base, "a")
	if err := f.s.Retry(f.ctx, c, store.Retry{Now: at(time.Second), At: at(time.Minute), Attempts: 1, LastError: "busy"}); err != nil {
		f.t.Fatal(err)
	}
	st = f.mustStatus("a")
	if st.State != store.StateQueued || st.Attempts != 1 || st.LastError != "busy" {
		f.t.Errorf("parked item: %+v", st)
	}
	sameTime(f.t, "NextAt while parked", st.NextAt, at(time.Minute))

	c = f.claimOne(at(time.Minute), "a")
	done, err := f.s.Complete(f.ctx, c, store.Final{Now: at(2 * time.Minute), Delivered: true, Attempts: 2, LastError: "busy"})
	if err != nil {
		f.t.Fatal(err)
	}
	st = f.mustStatus("a")
	if st != done {
		f.t.Errorf("Status %+v differs from Complete's %+v", st, done)
	}
	if st.State != store.StateDelivered || st.Attempts != 2 || st.Reason != "" || st.ErrCode != 0 || st.OpenID != "u1" {
		f.t.Errorf("delivered item: %+v", st)
	}
	sameTime(f.t, "Updated when delivered", st.Updated, at(2*time.Minute))
	sameTime(f.t, "Created when delivered", st.Created, base)
	if !st.NextAt.IsZero() {
		f.t.Errorf("delivered item: NextAt %s, want zero", show(st.NextAt))
	}

	c = f.claimOne(at(2*time.Minute), "b")
	failed, err := f.s.Complete(f.ctx, c, store.Final{Now: at(3 * time.Minute), Reason: "out_of_window", ErrCode: 45015,
		Attempts: 3, LastError: "45015 response out of time limit"})
	if err != nil {
		f.t.Fatal(err)
	}
	st = f.mustStatus("b")
	if st != failed {
		f.t.Errorf("Status %+v differs from Complete's %+v", st, failed)
	}
	if st.State != store.StateFailed || st.Reason != "out_of_window" || st.ErrCode != 45015 || st.Attempts != 3 ||
		st.LastError != "45015 response out of time limit" {
		f.t.Errorf("failed item: %+v", st)
	}
}

func testTemplates(f *fx) {
	t1 := item("t1", "u1")
	t1.MsgType = "template"
	f.accept(base, t1)
	c := f.claimOne(base, "t1")
	st, err := f.s.Complete(f.ctx, c, store.Final{Now: at(time.Second), Delivered: true, Attempts: 1, MsgID: 1001})
	if err != nil {
		f.t.Fatal(err)
	}
	if st.MsgID != 1001 || st.TemplateStatus != "" || st.MsgType != "template" {
		f.t.Errorf("Complete = %+v, want MsgID 1001, no template status yet", st)
	}
	st, ok, err := f.s.TemplateFinished(f.ctx, 1001, "success", at(2*time.Second))
	if err != nil || !ok {
		f.t.Fatalf("TemplateFinished = %v, %v; want found", ok, err)
	}
	if st.ID != "t1" || st.OpenID != "u1" || st.Rule != t1.Rule || st.TemplateStatus != "success" ||
		st.State != store.StateDelivered || st.MsgID != 1001 {
		f.t.Errorf("TemplateFinished = %+v, want t1's status with success", st)
	}
	if got := f.mustStatus("t1"); got.TemplateStatus != "success" {
		f.t.Errorf("Status after the report: TemplateStatus %q, want success", got.TemplateStatus)
	}
	// A report for a msgid nobody recorded.
	if st, ok, err := f.s.TemplateFinished(f.ctx, 4242, "success", at(3*time.Second)); err != nil || ok {
		f.t.Errorf("TemplateFinished for an unknown msgid = %+v, %v, %v; want not found", st, ok, err)
	}
}

// testTemplateEarly: the report overtakes template/send's answer.
func testTemplateEarly(f *fx) {
	t2 := item("t2", "u1")
	t2.MsgType = "template"
	f.accept(base, t2)
	c := f.claimOne(base, "t2")
	if _, ok, err := f.s.TemplateFinished(f.ctx, 2002, "failed:user block", at(time.Second)); err != nil || ok {
		f.t.Fatalf("early TemplateFinished = %v, %v; want not found yet", ok, err)
	}
	st, err := f.s.Complete(f.ctx, c, store.Final{Now: at(2 * time.Second), Delivered: true, Attempts: 1, MsgID: 2002})
	if err != nil {
		f.t.Fatal(err)
	}
	if st.TemplateStatus != "failed:user block" || st.MsgID != 2002 || st.ID != "t2" {
		f.t.Errorf("Complete after an early report = %+v, want its TemplateStatus", st)
	}
	if got := f.mustStatus("t2"); got.TemplateStatus != "failed:user block" {
		f.t.Errorf("Status: TemplateStatus %q, want the early report's", got.TemplateStatus)
	}
}

func testPending(f *fx) {
	f.pending(0)
	f.accept(base, item("a", "u1"), item("b", "u1"), item("x", "u2"))
	f.pending(3)
	cs := f.claimAll(base)
	f.pending(3) // claimed is still waiting
	for _, c := range cs {
		switch c.Item.ID {
		case "a":
			f.complete(c, base)
		case "x":
			if err := f.s.Retry(f.ctx, c, store.Retry{Now: base, At: at(time.Minute), Attempts: 1}); err != nil {
				f.t.Fatal(err)
			}
		}
	}
	f.pending(2)
	c := f.claimOne(base, "b")
	if _, err := f.s.Complete(f.ctx, c, store.Final{Now: base, Reason: "invalid", ErrCode: 40003, Attempts: 1}); err != nil {
		f.t.Fatal(err)
	}
	f.pending(1)
	f.complete(f.claimOne(at(time.Minute), "x"), at(time.Minute))
	f.pending(0)
}

func testClosed(f *fx) {
	f.accept(base, item("a", "u1"))
	if err := f.s.Close(); err != nil {
		f.t.Fatalf("Close: %v", err)
	}
	_, err := f.s.Accept(f.ctx, &store.Batch{Now: base, Items: []store.NewItem{item("b", "u1")}})
	if !errors.Is(err, store.ErrClosed) {
		f.t.Errorf("Accept after Close: %v, want ErrClosed", err)
	}
	if _, _, err := f.s.Claim(f.ctx, base, 10, lease); !errors.Is(err, store.ErrClosed) {
		f.t.Errorf("Claim after Close: %v, want ErrClosed", err)
	}
	if _, _, err := f.s.Status(f.ctx, "a"); !errors.Is(err, store.ErrClosed) {
		f.t.Errorf("Status after Close: %v, want ErrClosed", err)
	}
}

// testMedia: an upload is found until it expires, with the file's size
// and modification time to the nanosecond; a new one replaces it; a
// deleted one is gone.
func testMedia(f *fx) {
	get := func(key string, now time.Time) (store.Media, bool) {
		f.t.Helper()
		m, ok, err := f.s.Media(f.ctx, key, now)
		if err != nil {
			f.t.Fatalf("Media: %v", err)
		}
		return m, ok
	}
	if _, ok := get("image\x00a.jpg", base); ok {
		f.t.Fatal("an upload never recorded was found")
	}
	mod := time.Date(2025, 2, 1, 10, 0, 0, 123456789, time.UTC)
	m := store.Media{ID: "MEDIA_1", Size: 4321, ModTime: mod, Expires: at(72 * time.Hour)}
	if err := f.s.PutMedia(f.ctx, "image\x00a.jpg", m); err != nil {
		f.t.Fatal(err)
	}
	got, ok := get("image\x00a.jpg", at(time.Hour))
	if !ok || got.ID != "MEDIA_1" || got.Size != 4321 || !got.ModTime.Equal(mod) || !got.Expires.Equal(m.Expires) {
		f.t.Fatalf("Media = %+v, %v; want %+v", got, ok, m)
	}
	if _, ok := get("thumb\x00a.jpg", at(time.Hour)); ok {
		f.t.Fatal("another key's upload was found")
	}
	if _, ok := get("image\x00a.jpg", at(72*time.Hour)); ok {
		f.t.Fatal("an expired upload was found")
	}
	m.ID = "MEDIA_2"
	if err := f.s.PutMedia(f.ctx, "image\x00a.jpg", m); err != nil {
		f.t.Fatal(err)
	}
	if got, _ := get("image\x00a.jpg", base); got.ID != "MEDIA_2" {
		f.t.Fatalf("after a second upload Media = %+v, want MEDIA_2", got)
	}
	if err := f.s.DeleteMedia(f.ctx, "image\x00a.jpg"); err != nil {
		f.t.Fatal(err)
	}
	if _, ok := get("image\x00a.jpg", base); ok {
		f.t.Fatal("a deleted upload was found")
	}
}
