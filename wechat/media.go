package wechat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Temporary media types of media/upload.
const (
	MediaImage = "image"
	MediaVoice = "voice"
	MediaVideo = "video"
	MediaThumb = "thumb"
)

const (
	// mediaLife is how long WeChat keeps temporary media; a cached
	// media_id is dropped mediaMargin before, so that no message goes out
	// with one that expires on the way.
	mediaLife   = 72 * time.Hour
	mediaMargin = time.Hour
)

// mediaMaxBytes is WeChat's size limit of temporary media of a type. A
// larger file is refused before any call: WeChat would refuse it anyway
// (40009-40012), after the upload's time and bytes.
func mediaMaxBytes(mediaType string) int64 {
	switch mediaType {
	case MediaVoice:
		return 2 << 20
	case MediaThumb:
		return 64 << 10
	}
	return 10 << 20 // image, video
}

// ErrMediaFile wraps every problem with a local media file: missing,
// unreadable, too large, or of a kind that cannot be uploaded. Such a
// message fails at once; trying again would not help.
var ErrMediaFile = errors.New("wechat: media file")

// mediaEntry is a cached upload. The file's size and modification time are
// kept so that a file edited on disk is uploaded again.
type mediaEntry struct {
	id   string
	size int64
	mod  time.Time
}

// MediaStore keeps uploads beyond a Client: the server's store is one.
// Keys are the Client's own (the media type and the file's path). A
// MediaStore that fails costs an upload, never a message.
type MediaStore interface {
	GetMedia(ctx context.Context, key string) (MediaUpload, bool, error)
	PutMedia(ctx context.Context, key string, u MediaUpload) error
	DeleteMedia(ctx context.Context, key string) error
}

// MediaUpload is what a MediaStore keeps of one upload.
type MediaUpload struct {
	MediaID string
	Size    int64
	ModTime time.Time
	Expires time.Time // when the Client stops using it, before WeChat's three days end
}

func mediaKey(mediaType, path string) string { return mediaType + "\x00" + path }

// UploadMedia uploads the file at path as temporary media of mediaType
// (MediaImage, MediaVoice, MediaVideo or MediaThumb) and returns its
// media_id. The media_id is cached until shortly before its three days
// end, so later calls for the same unchanged file do not upload again;
// concurrent calls for one file share one upload.
func (c *Client) UploadMedia(ctx context.Context, mediaType, path string) (string, error) {
	switch mediaType {
	case MediaImage, MediaVoice, MediaVideo, MediaThumb:
	default:
		return "", fmt.Errorf("%w: unknown media type %q", ErrMediaFile, mediaType)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrMediaFile, err)
	}
	if err := checkMediaFile(mediaType, path, fi); err != nil {
		return "", err
	}
	key := mediaKey(mediaType, path)
	if id, ok := c.cachedMedia(key, fi); ok {
		return id, nil
	}
	ch := c.flight.DoChan("media\x00"+key, func() (any, error) {
		if id, ok := c.cachedMedia(key, fi); ok {
			return id, nil
		}
		if id, ok := c.keptMedia(ctx, key, fi); ok {
			return id, nil
		}
		uctx, cancel := c.shared(ctx, c.uploadTimeout)
		defer cancel()
		return c.upload(uctx, mediaType, path)
	})
	return awaitShared(ctx, ch)
}

// EvictMedia forgets the cached media_id of a file, after WeChat answered
// 40007 for it: the next UploadMedia uploads it again.
func (c *Client) EvictMedia(mediaType, path string) {
	key := mediaKey(mediaType, path)
	c.media.Delete(key)
	if c.kept != nil {
		ctx, cancel := context.WithTimeout(c.life, 5*time.Second)
		defer cancel()
		if err := c.kept.DeleteMedia(ctx, key); err != nil {
			c.log.Warn("media_id not forgotten in the store; it may be tried once more", "file", path, "error", err.Error())
		}
	}
}

// keptMedia is an upload the MediaStore has of the unchanged file, which
// it then caches in memory too.
func (c *Client) keptMedia(ctx context.Context, key string, fi os.FileInfo) (string, bool) {
	if c.kept == nil {
		return "", false
	}
	u, ok, err := c.kept.GetMedia(ctx, key)
	switch {
	case err != nil:
		c.log.Debug("media store not read; uploading", "error", err.Error())
		return "", false
	case !ok || u.Size != fi.Size() || !u.ModTime.Equal(fi.ModTime()):
		return "", false
	}
	ttl := time.Until(u.Expires)
	if ttl <= 0 {
		return "", false
	}
	c.media.Set(key, mediaEntry{id: u.MediaID, size: u.Size, mod: u.ModTime}, ttl)
	return u.MediaID, true
}

func (c *Client) isCached(key string, fi os.FileInfo) bool {
	_, ok := c.cachedMedia(key, fi)
	return ok
}

func (c *Client) cachedMedia(key string, fi os.FileInfo) (string, bool) {
	e, ok := c.media.Get(key)
	if !ok {
		return "", false
	}
	if e.size != fi.Size() || !e.mod.Equal(fi.ModTime()) {
		return "", false
	}
	return e.id, true
}

// upload reads the file and posts it as the multipart field "media".
func (c *Client) upload(ctx context.Context, mediaType, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrMediaFile, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrMediaFile, err)
	}
	if err := checkMediaFile(mediaType, path, fi); err != nil {
		return "", err
	}
	data, err := io.ReadAll(io.LimitReader(f, mediaMaxBytes(mediaType)+1))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrMediaFile, err)
	}
	if int64(len(data)) > mediaMaxBytes(mediaType) { // grew since Stat
		return "", fmt.Errorf("%w: %s: over %d bytes", ErrMediaFile, path, mediaMaxBytes(mediaType))
	}
	body, contentType, err := multipartBody(filepath.Base(path), data)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrMediaFile, err)
	}
	var ans struct {
		MediaID string `json:"media_id"`
		// type=thumb answers thumb_media_id instead of media_id.
		ThumbMediaID string        `json:"thumb_media_id"`
		CreatedAt    flexibleInt64 `json:"created_at"`
	}
	q := url.Values{"type": {mediaType}}
	if err := c.callWithToken(ctx, PathMediaUpload, q, contentType, body, c.uploadTimeout, &ans); err != nil {
		return "", err
	}
	id := ans.MediaID
	if id == "" {
		id = ans.ThumbMediaID
	}
	if id == "" {
		return "", fmt.Errorf("wechat %s: answer has no media_id", PathMediaUpload)
	}
	created := time.Now()
	if ans.CreatedAt > 0 {
		created = time.Unix(int64(ans.CreatedAt), 0)
	}
	expires := created.Add(mediaLife - mediaMargin)
	if ttl := time.Until(expires); ttl > 0 {
		key := mediaKey(mediaType, path)
		c.media.Set(key, mediaEntry{id: id, size: fi.Size(), mod: fi.ModTime()}, ttl)
		if c.kept != nil {
			u := MediaUpload{MediaID: id, Size: fi.Size(), ModTime: fi.ModTime(), Expires: expires}
			if err := c.kept.PutMedia(ctx, key, u); err != nil {
				c.log.Warn("media_id not kept in the store; a restart uploads the file again", "file", path, "error", err.Error())
			}
		}
	}
	c.log.Info("media uploaded", "media_type", mediaType, "file", path, "bytes", fi.Size())
	return id, nil
}

// checkMediaFile refuses what WeChat would: a directory, or a file over
// the type's limit.
func checkMediaFile(mediaType, path string, fi os.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s: not a regular file", ErrMediaFile, path)
	}
	if limit := mediaMaxBytes(mediaType); fi.Size() > limit {
		return fmt.Errorf("%w: %s: %d bytes; WeChat takes %s media of at most %d", ErrMediaFile, path, fi.Size(), mediaType, limit)
	}
	return nil
}

var quoteEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

func multipartBody(name string, data []byte) ([]byte, string, error) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="media"; filename="%s"; filelength=%d`, quoteEscaper.Replace(name), len(data)))
	ct := mime.TypeByExtension(filepath.Ext(name))
	if ct == "" {
		ct = http.DetectContentType(data)
	}
	h.Set("Content-Type", ct)
	pw, err := mw.CreatePart(h)
	if err != nil {
		return nil, "", err
	}
	if _, err := pw.Write(data); err != nil {
		return nil, "", err
	}
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return b.Bytes(), mw.FormDataContentType(), nil
}

// flexibleInt64 accepts a JSON number or a numeric string.
type flexibleInt64 int64

func (n *flexibleInt64) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return err
	}
	*n = flexibleInt64(v)
	return nil
}

// MediaRef names a file that one of a message's media_ids came from:
// after a 40007 it is evicted with EvictMedia and uploaded again.
type MediaRef struct{ Type, Path string }

// ResolveMedia returns m with every media object given as a file replaced
// by its uploaded media_id, and the files it used. m itself is never
// changed (rule reply items are shared by every request): a copy is made
// when anything is filled in. beforeUpload, when not nil, is called once
// before the first file that is not cached is uploaded.
func (c *Client) ResolveMedia(ctx context.Context, m *CustomMessage, beforeUpload func()) (*CustomMessage, []MediaRef, error) {
	cp := *m
	var refs []MediaRef
	fill := func(id *string, mediaType, path string) error {
		if path == "" || *id != "" {
			return nil
		}
		if beforeUpload != nil {
			if fi, err := os.Stat(path); err == nil && !c.isCached(mediaKey(mediaType, path), fi) {
				beforeUpload()
				beforeUpload = nil
			}
		}
		got, err := c.UploadMedia(ctx, mediaType, path)
		if err != nil {
			return err
		}
		*id = got
		refs = append(refs, MediaRef{mediaType, path})
		return nil
	}
	var err error
	switch {
	case m.Image != nil && m.Image.File != "":
		v := *m.Image
		err = fill(&v.MediaID, MediaImage, v.File)
		cp.Image = &v
	case m.Voice != nil && m.Voice.File != "":
		v := *m.Voice
		err = fill(&v.MediaID, MediaVoice, v.File)
		cp.Voice = &v
	case m.MPNews != nil && m.MPNews.File != "" && m.MPNews.MediaID == "":
		err = fmt.Errorf("%w: mpnews takes the media_id of a published news item, not a file", ErrMediaFile)
	case m.Video != nil && (m.Video.File != "" || m.Video.ThumbFile != ""):
		v := *m.Video
		if err = fill(&v.MediaID, MediaVideo, v.File); err == nil {
			err = fill(&v.ThumbMediaID, MediaThumb, v.ThumbFile)
		}
		cp.Video = &v
	case m.Music != nil && m.Music.ThumbFile != "":
		v := *m.Music
		err = fill(&v.ThumbMediaID, MediaThumb, v.ThumbFile)
		cp.Music = &v
	case m.MiniProgramPage != nil && m.MiniProgramPage.ThumbFile != "":
		// The card picture is uploaded as an image: thumb media are
		// limited to 64 KB, too small for the 520×416 card.
		v := *m.MiniProgramPage
		err = fill(&v.ThumbMediaID, MediaImage, v.ThumbFile)
		cp.MiniProgramPage = &v
	default:
		return m, nil, nil
	}
	if err != nil {
		return nil, refs, err
	}
	return &cp, refs, nil
}
