// rtc-node logs at debug level unless NODE_ENV is production, and reads it when first imported:
// import this module before anything that loads @livekit/rtc-node to keep test output readable.
process.env.NODE_ENV = 'production';
