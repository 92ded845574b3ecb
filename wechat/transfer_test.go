package wechat

import "testing"

func TestEncodeTransfer(t *testing.T) {
	for _, tc := range []struct {
		kf, want string
	}{
		{"", "<xml><ToUserName><![CDATA[oUSER]]></ToUserName><FromUserName><![CDATA[gh_acct]]></FromUserName><CreateTime>1700000000</CreateTime>" +
			"<MsgType><![CDATA[transfer_customer_service]]></MsgType></xml>"},
		{"kf2001@gh_acct", "<xml><ToUserName><![CDATA[oUSER]]></ToUserName><FromUserName><![CDATA[gh_acct]]></FromUserName><CreateTime>1700000000</CreateTime>" +
			"<MsgType><![CDATA[transfer_customer_service]]></MsgType><TransInfo><KfAccount><![CDATA[kf2001@gh_acct]]></KfAccount></TransInfo></xml>"},
	} {
		if got := string(EncodeTransfer("oUSER", "gh_acct", 1700000000, TransferCustomerService{KfAccount: tc.kf})); got != tc.want {
			t.Errorf("kf %q:\n%s\nwant\n%s", tc.kf, got, tc.want)
		}
	}
}
