// Package wechat is the WeChat Official Account platform as wxreply sees it:
// callback signatures and message encryption, the inbound Message, passive
// replies, and the API client (access token, customer-service and template
// messages, typing, media, the custom menu) with WeChat's error codes as
// typed errors.
//
// It imports nothing else of wxreply: the rule engine and the HTTP handlers
// build on it, never the other way round.
package wechat
