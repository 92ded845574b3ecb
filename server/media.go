package server

import (
	"context"
	"time"

	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// mediaStore keeps the client's uploads in the server's store, so that a
// restart does not upload every file of the rules again (and, on a store
// shared by several instances, one upload serves them all).
type mediaStore struct {
	st  store.Store
	now func() time.Time
}

var _ wechat.MediaStore = mediaStore{}

func (m mediaStore) GetMedia(ctx context.Context, key string) (wechat.MediaUpload, bool, error) {
	r, ok, err := m.st.Media(ctx, key, m.now())
	if err != nil || !ok {
		return wechat.MediaUpload{}, false, err
	}
	return wechat.MediaUpload{MediaID: r.ID, Size: r.Size, ModTime: r.ModTime, Expires: r.Expires}, true, nil
}

func (m mediaStore) PutMedia(ctx context.Context, key string, u wechat.MediaUpload) error {
	return m.st.PutMedia(ctx, key, store.Media{ID: u.MediaID, Size: u.Size, ModTime: u.ModTime, Expires: u.Expires})
}

func (m mediaStore) DeleteMedia(ctx context.Context, key string) error {
	return m.st.DeleteMedia(ctx, key)
}
